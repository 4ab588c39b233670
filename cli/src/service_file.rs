//! Service definitions as operators write them for `constellation service apply -f`:
//! YAML (`.yaml`, `.yml`, or `-` for stdin) or JSON (`.json`), holding a `ServiceSpec`
//! in the proto3 JSON mapping, a list of them, or `{services: [...]}`. A YAML file may
//! hold several documents (`---`), each of those shapes. Unknown fields are errors that
//! name the field and its path (`services[1].ports[0].protocl`).

use anyhow::{Context, bail};
use constellation_proto::v1::ServiceSpec;
use serde::Deserialize;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Syntax {
    Yaml,
    Json,
}

/// Reads the specs in `path` (`-`: YAML from stdin).
pub fn read(path: &Path) -> anyhow::Result<Vec<ServiceSpec>> {
    let (text, syntax) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read service definitions from stdin")?;
        (text, Syntax::Yaml)
    } else {
        let syntax = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Syntax::Yaml,
            Some("json") => Syntax::Json,
            _ => bail!(
                "{}: unknown file type (use .yaml, .yml or .json, or - for YAML on stdin)",
                path.display()
            ),
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        (text, syntax)
    };
    let name = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    parse(&text, syntax).with_context(|| name)
}

/// The specs in `text`, in order. Fails on an empty input and on a name given twice.
pub fn parse(text: &str, syntax: Syntax) -> anyhow::Result<Vec<ServiceSpec>> {
    let documents: Vec<serde_json::Value> = match syntax {
        Syntax::Json => vec![serde_json::from_str(text)?],
        Syntax::Yaml => yaml_serde::Deserializer::from_str(text)
            .map(serde_json::Value::deserialize)
            .collect::<Result<_, _>>()?,
    };
    let documents: Vec<_> = documents.into_iter().filter(|d| !d.is_null()).collect();
    let several = documents.len() > 1;
    let mut specs = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let found = specs_in(document);
        let found = if several {
            found.with_context(|| format!("document {}", i + 1))?
        } else {
            found?
        };
        specs.extend(found);
    }
    if specs.is_empty() {
        bail!("no service definitions");
    }
    let mut seen = std::collections::BTreeSet::new();
    for spec in &specs {
        if !seen.insert(spec.name.as_str()) {
            bail!("service {:?} is defined more than once", spec.name);
        }
    }
    Ok(specs)
}

/// `{services: [...]}`: the only key such a file may have.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceList {
    services: Vec<ServiceSpec>,
}

fn specs_in(document: serde_json::Value) -> anyhow::Result<Vec<ServiceSpec>> {
    use serde_json::Value;
    Ok(match document {
        Value::Array(_) => decode::<Vec<ServiceSpec>>(document)?,
        Value::Object(ref map) if map.contains_key("services") => {
            decode::<ServiceList>(document)?.services
        }
        Value::Object(_) => vec![decode::<ServiceSpec>(document)?],
        other => bail!(
            "expected a service definition, a list of them, or {{services: [...]}}, not {}",
            kind(&other)
        ),
    })
}

/// Deserialises with the path of the offending field in the error, and without serde's
/// "expected one of" list, which for a ServiceSpec names some eighty fields.
fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> anyhow::Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let message = match message.split_once(", expected one of") {
            Some((head, _)) if head.starts_with("unknown field") => head.to_owned(),
            _ => message,
        };
        if path == "." {
            anyhow::anyhow!(message)
        } else {
            anyhow::anyhow!("{path}: {message}")
        }
    })
}

fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::Protocol;

    #[test]
    fn yaml_single_service() {
        let specs = parse(
            r#"
name: web
image: nginx:1.27
replicas: 3
env:
  MODE: production
ports:
  - container_port: 80
    published_port: 8080
    protocol: PROTOCOL_TCP
health_check:
  test: [CMD, curl, -f, http://localhost/]
  interval: 5s
"#,
            Syntax::Yaml,
        )
        .unwrap();
        assert_eq!(specs.len(), 1);
        let web = &specs[0];
        assert_eq!(web.name, "web");
        assert_eq!(web.image, "nginx:1.27");
        assert_eq!(web.replicas, Some(3));
        assert_eq!(web.env["MODE"], "production");
        assert_eq!(web.ports[0].container_port, 80);
        assert_eq!(web.ports[0].published_port, Some(8080));
        assert_eq!(web.ports[0].protocol(), Protocol::Tcp);
        let interval = web.health_check.as_ref().unwrap().interval.unwrap();
        assert_eq!(interval.seconds, 5);
    }

    #[test]
    fn yaml_list_wrapped_list_and_documents() {
        let list = parse(
            "- {name: web, image: nginx}\n- {name: db, image: postgres}\n",
            Syntax::Yaml,
        )
        .unwrap();
        assert_eq!(names(&list), ["web", "db"]);

        let wrapped = parse(
            "services:\n  - name: web\n    image: nginx\n  - name: db\n    image: postgres\n",
            Syntax::Yaml,
        )
        .unwrap();
        assert_eq!(wrapped, list);

        let documents = parse(
            "name: web\nimage: nginx\n---\n- name: db\n  image: postgres\n---\n",
            Syntax::Yaml,
        )
        .unwrap();
        assert_eq!(documents, list);
    }

    #[test]
    fn json_single_and_wrapped() {
        let single = parse(
            r#"{"name": "web", "image": "nginx", "replicas": 2, "restart": {"condition": "RESTART_CONDITION_ON_FAILURE"}}"#,
            Syntax::Json,
        )
        .unwrap();
        assert_eq!(names(&single), ["web"]);
        assert_eq!(single[0].replicas, Some(2));

        let wrapped = parse(
            r#"{"services": [{"name": "web", "image": "nginx"}, {"name": "db", "image": "postgres"}]}"#,
            Syntax::Json,
        )
        .unwrap();
        assert_eq!(names(&wrapped), ["web", "db"]);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = parse("name: web\nimage: nginx\nreplica: 3\n", Syntax::Yaml).unwrap_err();
        assert_eq!(format!("{err:#}"), "replica: unknown field `replica`");

        let err = parse(
            "services:\n  - name: web\n    image: nginx\n    ports:\n      - container_port: 80\n        protocl: PROTOCOL_UDP\n",
            Syntax::Yaml,
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "services[0].ports[0].protocl: unknown field `protocl`"
        );

        let err = parse(
            r#"[{"name": "web", "image": "nginx", "imagePullPolicy": "Always"}]"#,
            Syntax::Json,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `imagePullPolicy`"),
            "{err:#}"
        );

        let err = parse("services: []\nversion: 3\n", Syntax::Yaml).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `version`"),
            "{err:#}"
        );

        let err = parse("name: a\n---\nname: b\nimagee: x\n", Syntax::Yaml).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "document 2: imagee: unknown field `imagee`"
        );
    }

    #[test]
    fn bad_values_and_shapes_are_explained() {
        let err = parse("name: web\nenv:\n  DEBUG: true\n", Syntax::Yaml).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("env.DEBUG: invalid type"),
            "{err:#}"
        );

        let err = parse("just a string\n", Syntax::Yaml).unwrap_err();
        assert!(format!("{err:#}").contains("not a string"), "{err:#}");

        let err = parse("", Syntax::Yaml).unwrap_err();
        assert_eq!(format!("{err:#}"), "no service definitions");

        let err = parse("- name: web\n- name: web\n", Syntax::Yaml).unwrap_err();
        assert!(format!("{err:#}").contains("more than once"), "{err:#}");

        assert!(parse("{name: web", Syntax::Yaml).is_err());
        assert!(parse("{\"name\": ", Syntax::Json).is_err());
    }

    #[test]
    fn files_are_read_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("web.yml");
        std::fs::write(&yaml, "name: web\nimage: nginx\n").unwrap();
        assert_eq!(names(&read(&yaml).unwrap()), ["web"]);

        let json = dir.path().join("web.json");
        std::fs::write(&json, r#"{"name": "web", "image": "nginx"}"#).unwrap();
        assert_eq!(names(&read(&json).unwrap()), ["web"]);

        let txt = dir.path().join("web.txt");
        std::fs::write(&txt, "name: web\n").unwrap();
        let err = read(&txt).unwrap_err();
        assert!(err.to_string().contains("unknown file type"), "{err:#}");

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "name: web\nfoo: 1\n").unwrap();
        let err = read(&bad).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("{}: foo: unknown field `foo`", bad.display())
        );
    }

    fn names(specs: &[ServiceSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.name.as_str()).collect()
    }
}
