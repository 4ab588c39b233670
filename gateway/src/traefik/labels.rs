//! Reading `traefik.*` container labels into configuration trees, the way Traefik's
//! Docker provider decodes them: keys matched case-insensitively against the key
//! table in [`super::keys`], names (routers, services, middlewares, header names)
//! kept as written, comma-separated lists, typed values. Any label the table does not
//! know, or a value of the wrong type, is an error naming the label.

use super::TraefikVersion;
use super::keys::{self, Field, Kind};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::collections::BTreeMap;

/// A node of the dynamic configuration. Objects are sorted maps, so a tree always
/// serialises to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Obj(BTreeMap<String, Value>),
    /// A list built from indexed labels (`domains[0].main`), emitted in index order.
    Seq(BTreeMap<u32, Value>),
    List(Vec<Value>),
    Str(String),
    Bool(bool),
    Int(i64),
}

impl Value {
    pub fn obj() -> Self {
        Value::Obj(BTreeMap::new())
    }

    pub fn as_obj(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Obj(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_obj_mut(&mut self) -> Option<&mut BTreeMap<String, Value>> {
        match self {
            Value::Obj(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Removes empty objects below this one, except under keys Traefik accepts empty.
    /// Returns whether this value itself is now an empty object.
    pub fn prune(&mut self) -> bool {
        match self {
            Value::Obj(map) => {
                map.retain(|key, child| !child.prune() || keys::may_be_empty(key));
                map.is_empty()
            }
            Value::Seq(items) => {
                items.retain(|_, child| !child.prune());
                false
            }
            Value::List(items) => {
                items.retain_mut(|child| !child.prune());
                false
            }
            _ => false,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Obj(map) => s.collect_map(map),
            Value::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items.values() {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::List(items) => s.collect_seq(items),
            Value::Str(v) => s.serialize_str(v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::Int(v) => s.serialize_i64(*v),
        }
    }
}

/// Routers, services and middlewares of one protocol, by name; each an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub routers: BTreeMap<String, Value>,
    pub services: BTreeMap<String, Value>,
    pub middlewares: BTreeMap<String, Value>,
}

impl Section {
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty() && self.middlewares.is_empty()
    }
}

/// What one service's labels say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelConfig {
    /// `traefik.enable`, when present.
    pub enable: Option<bool>,
    pub http: Section,
    pub tcp: Section,
    pub udp: Section,
}

/// A label the renderer cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    pub label: String,
    pub reason: String,
}

impl std::fmt::Display for LabelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "label {:?}: {}", self.label, self.reason)
    }
}

/// Whether any label is a Traefik label (cheap pre-check before parsing).
pub fn has_traefik_labels(labels: &BTreeMap<String, String>) -> bool {
    labels.keys().any(|k| {
        k.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("traefik."))
    })
}

/// Parses every `traefik.*` label; other labels are ignored. All errors are reported,
/// not only the first.
pub fn parse(
    labels: &BTreeMap<String, String>,
    version: TraefikVersion,
) -> Result<LabelConfig, Vec<LabelError>> {
    let mut config = LabelConfig::default();
    let mut errors = Vec::new();
    for (key, value) in labels {
        let Some(rest) = key
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("traefik."))
            .map(|_| &key[8..])
        else {
            continue;
        };
        if let Err(reason) = parse_one(&mut config, rest, value, version) {
            errors.push(LabelError {
                label: key.clone(),
                reason,
            });
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn parse_one(
    config: &mut LabelConfig,
    rest: &str,
    value: &str,
    version: TraefikVersion,
) -> Result<(), String> {
    let segments: Vec<&str> = rest.split('.').collect();
    let root = segments[0].to_ascii_lowercase();
    let (section, tables) = match root.as_str() {
        "enable" if segments.len() == 1 => {
            config.enable = Some(parse_bool(value)?);
            return Ok(());
        }
        // Options of Traefik's own Docker and Swarm providers; nothing to configure here.
        "docker" | "swarm" => return Ok(()),
        "http" => (
            &mut config.http,
            [keys::HTTP_ROUTER, keys::HTTP_SERVICE, keys::HTTP_MIDDLEWARE],
        ),
        "tcp" => (&mut config.tcp, [keys::TCP_ROUTER, keys::TCP_SERVICE, &[]]),
        "udp" => (&mut config.udp, [keys::UDP_ROUTER, keys::UDP_SERVICE, &[]]),
        _ => return Err(
            "unknown key (expected traefik.enable, traefik.http.*, traefik.tcp.* or traefik.udp.*)"
                .into(),
        ),
    };
    let Some(kind) = segments.get(1) else {
        return Err("incomplete key".into());
    };
    let (map, fields) = match kind.to_ascii_lowercase().as_str() {
        "routers" => (&mut section.routers, tables[0]),
        "services" => (&mut section.services, tables[1]),
        "middlewares" if !tables[2].is_empty() => (&mut section.middlewares, tables[2]),
        "middlewares" => return Err(format!("{root} middlewares are not supported")),
        other => {
            return Err(format!(
                "unknown key {other:?} (expected routers, services or middlewares)"
            ));
        }
    };
    let name = match segments.get(2) {
        Some(name) if !name.is_empty() => *name,
        _ => return Err("missing name".into()),
    };
    if segments.len() < 4 {
        return Err(format!("{name:?} needs a key below it"));
    }
    let entry = map.entry(name.to_owned()).or_insert_with(Value::obj);
    let obj = entry.as_obj_mut().expect("entries are objects");
    set(obj, fields, &segments[3..], value, version)
}

/// Sets the value of `segments` (a path below an object described by `fields`).
fn set(
    obj: &mut BTreeMap<String, Value>,
    fields: &'static [Field],
    segments: &[&str],
    value: &str,
    version: TraefikVersion,
) -> Result<(), String> {
    let segment = segments[0];
    let (name, index) = split_index(segment)?;
    let lower = name.to_ascii_lowercase();
    let Some(field) = keys::find(fields, &lower) else {
        return Err(format!("unknown key {name:?}"));
    };
    if !field.since.accepts(version) {
        return Err(format!(
            "{:?} is not supported by Traefik {}",
            field.json,
            version.label()
        ));
    }
    let below = &segments[1..];
    if index.is_some() && !matches!(field.kind, Kind::Indexed(_)) {
        return Err(format!("{name:?} takes no index"));
    }
    let leaf = match field.kind {
        Kind::Obj(sub) => {
            if below.is_empty() {
                return Err(format!("{name:?} needs a key below it"));
            }
            let child = obj
                .entry(field.json.to_owned())
                .or_insert_with(Value::obj)
                .as_obj_mut()
                .ok_or_else(|| format!("{name:?} is set both as a value and as an object"))?;
            return set(child, sub, below, value, version);
        }
        Kind::Flag(sub) => {
            if below.is_empty() {
                if parse_bool(value)? {
                    obj.entry(field.json.to_owned()).or_insert_with(Value::obj);
                }
                return Ok(());
            }
            let child = obj
                .entry(field.json.to_owned())
                .or_insert_with(Value::obj)
                .as_obj_mut()
                .ok_or_else(|| format!("{name:?} is set both as a value and as an object"))?;
            return set(child, sub, below, value, version);
        }
        Kind::Indexed(sub) => {
            let Some(index) = index else {
                return Err(format!("{name:?} needs an index, as in {name}[0]"));
            };
            if below.is_empty() {
                return Err(format!("{name}[{index}] needs a key below it"));
            }
            let Value::Seq(items) = obj
                .entry(field.json.to_owned())
                .or_insert_with(|| Value::Seq(BTreeMap::new()))
            else {
                return Err(format!("{name:?} is set both as a value and a list"));
            };
            let child = items
                .entry(index)
                .or_insert_with(Value::obj)
                .as_obj_mut()
                .expect("items are objects");
            return set(child, sub, below, value, version);
        }
        Kind::Map => {
            if below.is_empty() {
                return Err(format!("{name:?} needs a name below it"));
            }
            let key = below.join(".");
            let map = obj
                .entry(field.json.to_owned())
                .or_insert_with(Value::obj)
                .as_obj_mut()
                .expect("maps are objects");
            if map
                .insert(key.clone(), Value::Str(value.to_owned()))
                .is_some()
            {
                return Err(format!("{key:?} is set twice"));
            }
            return Ok(());
        }
        _ if !below.is_empty() => {
            return Err(format!("{name:?} is a value and has no keys below it"));
        }
        Kind::Str => {
            if value.is_empty() {
                return Err("must not be empty".into());
            }
            Value::Str(value.to_owned())
        }
        Kind::Bool => Value::Bool(parse_bool(value)?),
        Kind::Int => Value::Int(parse_int(value)?),
        Kind::Duration => {
            if !is_duration(value) {
                return Err(format!(
                    "{value:?} is not a duration (such as 10s, 1m30s, 500ms, or whole seconds)"
                ));
            }
            Value::Str(value.trim().to_owned())
        }
        Kind::List => Value::List(parse_list(value)?.into_iter().map(Value::Str).collect()),
        Kind::IntList => Value::List(
            parse_list(value)?
                .iter()
                .map(|v| parse_int(v).map(Value::Int))
                .collect::<Result<_, _>>()?,
        ),
    };
    if obj.insert(field.json.to_owned(), leaf).is_some() {
        return Err(format!("{:?} is set twice", field.json));
    }
    Ok(())
}

/// `domains[2]` → ("domains", Some(2)); `rule` → ("rule", None).
fn split_index(segment: &str) -> Result<(&str, Option<u32>), String> {
    let Some(open) = segment.find('[') else {
        return Ok((segment, None));
    };
    let index = segment[open + 1..]
        .strip_suffix(']')
        .and_then(|i| i.parse::<u32>().ok())
        .filter(|i| *i < 1000)
        .ok_or_else(|| format!("{segment:?}: an index is a number below 1000 in brackets"))?;
    Ok((&segment[..open], Some(index)))
}

/// Go's `strconv.ParseBool`, which Traefik's label parser uses.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (true or false)")),
    }
}

fn parse_int(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not an integer"))
}

fn parse_list(value: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err("must list at least one value (comma-separated)".into());
    }
    Ok(items)
}

/// A Go duration ("1h2m3.5s", "300ms", "0") or whole seconds, as Traefik reads them.
fn is_duration(value: &str) -> bool {
    let value = value.trim();
    if value.is_empty() {
        return false;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) || value == "0" {
        return true;
    }
    let mut rest = value.strip_prefix(['+', '-']).unwrap_or(value);
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_go_syntax() {
        for ok in ["10s", "1m30s", "500ms", "1.5h", "30", "0", "2h45m", "10us"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "s", "10x", "1..5s", "ten", "10 s", "-"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn indexes_are_bounded_numbers() {
        assert_eq!(split_index("domains[3]").unwrap(), ("domains", Some(3)));
        assert_eq!(split_index("rule").unwrap(), ("rule", None));
        assert!(split_index("domains[x]").is_err());
        assert!(split_index("domains[5000]").is_err());
        assert!(split_index("domains[1").is_err());
    }
}
