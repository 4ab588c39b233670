//! How results reach the operator: a table for people, JSON or YAML for scripts.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// A result that can be shown as rows as well as serialised.
pub trait Tabular: Serialize {
    fn header(&self) -> Vec<&'static str>;
    fn rows(&self) -> Vec<Vec<String>>;
}

pub fn print<T: Tabular>(format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(value.header())
                .add_rows(value.rows());
            println!("{table}");
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", yaml_serde::to_string(value)?),
    }
    Ok(())
}
