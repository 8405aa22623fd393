//! The daemon's configuration: a TOML file, drop-ins from `<config dir>/criox.conf.d/*.toml`
//! applied in name order, then command-line flags.
//!
//! Each file is checked on its own against the full schema, so an unknown key or a wrong
//! type is reported with that file's path and line; the files are then merged as tables and
//! the merged table becomes the effective configuration.

mod defaults;
mod files;
mod model;
mod render;
mod validate;

use std::path::{Path, PathBuf};

pub use model::*;

use files::{drop_in_files, merge, parse_file};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/criox/criox.toml";
pub const DROP_IN_DIR_NAME: &str = "criox.conf.d";
/// The handler backed by libcontainer inside this binary; it needs no `path`.
pub const EMBEDDED_HANDLER: &str = "embedded";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list drop-in directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Command-line values that take precedence over every file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub listen: Option<PathBuf>,
    pub log_level: Option<String>,
}

impl Config {
    /// Loads `path` (a missing file at the default path means "all defaults"), then its
    /// drop-ins, then `overrides`.
    pub fn load(
        path: &Path,
        path_is_explicit: bool,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        match std::fs::read_to_string(path) {
            Ok(text) => merge(&mut merged, parse_file(path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path_is_explicit => {}
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        for drop_in in drop_in_files(path)? {
            let text = std::fs::read_to_string(&drop_in).map_err(|source| ConfigError::Read {
                path: drop_in.clone(),
                source,
            })?;
            merge(&mut merged, parse_file(&drop_in, &text)?);
        }
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        // The embedded handler is part of the binary: a file that lists other handlers
        // adds to it rather than removing it.
        config
            .runtime
            .handlers
            .entry(EMBEDDED_HANDLER.to_string())
            .or_default();
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        if let Some(root) = &overrides.root {
            self.root = root.clone();
        }
        if let Some(state) = &overrides.state {
            self.state = state.clone();
        }
        if let Some(listen) = &overrides.listen {
            self.listen = listen.clone();
        }
        if let Some(level) = &overrides.log_level {
            self.log_level = level.clone();
        }
    }

    /// The gRPC socket path, after defaulting to `<state>/criox.sock`.
    pub fn listen_path(&self) -> PathBuf {
        if self.listen.as_os_str().is_empty() {
            self.state.join("criox.sock")
        } else {
            self.listen.clone()
        }
    }
}

#[cfg(test)]
mod tests;
