//! TOML config files: compiled-in defaults overlaid by a user's file, table by table, with
//! errors that name the file or the key. The pipeline config ([`crate::pipeline::config`]) and
//! the training recipe ([`crate::train::recipe`]) are both read this way.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{reason} (config key {key} = '{value}')")]
    Value { key: &'static str, value: String, reason: String },
}

/// A value (flag or config key) that does not parse, saying what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Merges `overlay` into `base`, table by table.
pub fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Parses a TOML file, naming it in the error.
pub fn read_toml(path: &Path) -> Result<toml::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })?;
    toml::from_str(&text).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })
}
