//! How results reach the operator: a table for people, JSON or YAML for scripts. JSON
//! and YAML show the protocol messages themselves (the proto3 JSON mapping), so scripts
//! read the same shapes as SDK users; tables are a summary.

use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// A result that can be shown as rows as well as serialised.
pub trait Tabular: Serialize {
    /// Lines shown above the table (table format only).
    fn preamble(&self) -> Vec<String> {
        Vec::new()
    }
    /// Column titles; empty for a result that is only its preamble.
    fn header(&self) -> Vec<&'static str>;
    fn rows(&self) -> Vec<Vec<String>>;
}

/// `value` as text in `format`, ending with a newline.
pub fn render<T: Tabular + ?Sized>(format: Format, value: &T) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => {
            let mut out = String::new();
            for line in value.preamble() {
                out.push_str(&line);
                out.push('\n');
            }
            let header = value.header();
            if !header.is_empty() {
                let mut table = comfy_table::Table::new();
                table
                    .load_preset(comfy_table::presets::NOTHING)
                    .set_header(header)
                    .add_rows(value.rows());
                // comfy-table pads every cell by one space on each side; the first
                // column's left pad only indents the whole table.
                for line in table.lines() {
                    out.push_str(line.strip_prefix(' ').unwrap_or(&line).trim_end());
                    out.push('\n');
                }
            }
            out
        }
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => yaml_serde::to_string(value)?,
    })
}

pub fn print<T: Tabular + ?Sized>(format: Format, value: &T) -> anyhow::Result<()> {
    write_stdout(&render(format, value)?)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A result that is one sentence in a table and the protocol response in JSON or YAML.
pub struct Done<T> {
    pub text: String,
    pub response: T,
}

impl<T: Serialize> Serialize for Done<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.response.serialize(serializer)
    }
}

impl<T: Serialize> Tabular for Done<T> {
    fn preamble(&self) -> Vec<String> {
        vec![self.text.clone()]
    }
    fn header(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        Vec::new()
    }
}

/// Cell helpers: how values common to many tables read.
pub mod cell {
    use pbjson_types::{Duration, Timestamp};
    use std::time::SystemTime;

    /// An enum's protocol name without its prefix, lower-case: `NODE_STATUS_READY`
    /// becomes "ready". `UNSPECIFIED` shows as `unspecified`, which callers whose proto
    /// documents a default replace first.
    pub fn word(name: &str, prefix: &str) -> String {
        name.strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase()
            .replace('_', "-")
    }

    pub fn opt<T: ToString>(value: Option<T>) -> String {
        value.map_or_else(|| "-".to_owned(), |v| v.to_string())
    }

    /// How long ago `at` was ("42s", "5m", "3h", "2d"), or "in 5m" for a future time.
    pub fn age(at: Option<&Timestamp>) -> String {
        age_at(at, SystemTime::now())
    }

    pub fn age_at(at: Option<&Timestamp>, now: SystemTime) -> String {
        let Some(at) = at else {
            return "-".to_owned();
        };
        let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(_) => return "-".to_owned(),
        };
        let delta = now - at.seconds;
        if delta >= 0 {
            compact(delta.unsigned_abs())
        } else {
            format!("in {}", compact(delta.unsigned_abs()))
        }
    }

    /// `at` relative to now, for sentences: "5m ago", "in 30s".
    pub fn when(at: Option<&Timestamp>) -> String {
        match age(at) {
            a if a == "-" || a.starts_with("in ") => a,
            a => format!("{a} ago"),
        }
    }

    /// The largest whole unit of `secs`: "42s", "5m", "3h", "2d".
    pub fn compact(secs: u64) -> String {
        match secs {
            0..60 => format!("{secs}s"),
            60..3_600 => format!("{}m", secs / 60),
            3_600..86_400 => format!("{}h", secs / 3_600),
            _ => format!("{}d", secs / 86_400),
        }
    }

    pub fn duration(d: Option<&Duration>) -> String {
        match d.and_then(|d| std::time::Duration::try_from(*d).ok()) {
            Some(d) => humantime::format_duration(d).to_string(),
            None => "-".to_owned(),
        }
    }

    /// A byte count in binary units: "512Mi", "7.8Gi".
    pub fn bytes(n: u64) -> String {
        const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
        let mut value = n as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 || value >= 10.0 || value.fract() == 0.0 {
            format!("{value:.0}{}", UNITS[unit])
        } else {
            format!("{value:.1}{}", UNITS[unit])
        }
    }

    /// CPU millicores as cores: 1500 is "1.5".
    pub fn cpus(millis: u64) -> String {
        if millis.is_multiple_of(1000) {
            (millis / 1000).to_string()
        } else {
            format!("{}", millis as f64 / 1000.0)
        }
    }

    /// `labels` as "k=v,k=v".
    pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
        if labels.is_empty() {
            return "-".to_owned();
        }
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::cell::*;
    use super::*;

    #[test]
    fn cells_read_as_people_write_them() {
        assert_eq!(word("NODE_STATUS_READY", "NODE_STATUS_"), "ready");
        assert_eq!(
            word("UPDATE_STATE_ROLLING_BACK", "UPDATE_STATE_"),
            "rolling-back"
        );
        assert_eq!(compact(42), "42s");
        assert_eq!(compact(300), "5m");
        assert_eq!(compact(2 * 86_400 + 5), "2d");
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(512 << 20), "512Mi");
        assert_eq!(bytes(1536), "1.5Ki");
        assert_eq!(cpus(1500), "1.5");
        assert_eq!(cpus(4000), "4");
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let ts = |seconds| pbjson_types::Timestamp { seconds, nanos: 0 };
        assert_eq!(age_at(Some(&ts(880)), now), "2m");
        assert_eq!(age_at(Some(&ts(1_030)), now), "in 30s");
        assert_eq!(age_at(None, now), "-");
    }

    #[test]
    fn done_is_a_sentence_in_a_table_and_the_response_in_json() {
        let done = Done {
            text: "deleted service web".to_owned(),
            response: serde_json::json!({"index": "7"}),
        };
        assert_eq!(
            render(Format::Table, &done).unwrap(),
            "deleted service web\n"
        );
        assert_eq!(
            render(Format::Json, &done).unwrap(),
            "{\n  \"index\": \"7\"\n}\n"
        );
    }
}
