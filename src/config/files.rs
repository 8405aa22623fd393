//! The main file and its drop-ins: which files, each checked on its own, merged as tables.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, DROP_IN_DIR_NAME};

/// Checks one file against the schema (for errors with its path and line) and returns
/// its table for merging.
pub(super) fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let error = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: describe(text, &e),
    };
    toml::from_str::<Config>(text).map_err(error)?;
    toml::from_str::<toml::Table>(text).map_err(error)
}

/// One line: "line N, column M: message", instead of toml's multi-line snippet.
fn describe(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

pub(super) fn drop_in_files(config_path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = config_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(DROP_IN_DIR_NAME);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::ReadDir { path: dir, source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::ReadDir {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Tables merge key by key; any other value replaces the earlier one.
pub(super) fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
