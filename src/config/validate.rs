//! The checks of a merged configuration that the file model cannot express.

use super::{Config, ConfigError, EMBEDDED_HANDLER};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let tls = &self.streaming;
        if tls.tls_cert_file.as_os_str().is_empty() != tls.tls_key_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "streaming.tls_cert_file and streaming.tls_key_file go together: set both or neither"
                    .to_string(),
            ));
        }
        for (key, path) in [("root", &self.root), ("state", &self.state)] {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be an absolute path, got {:?}",
                    path
                )));
            }
        }
        if !self
            .runtime
            .handlers
            .contains_key(&self.runtime.default_handler)
        {
            return Err(ConfigError::Invalid(format!(
                "runtime.default_handler {:?} names no [runtime.handlers.{}] table",
                self.runtime.default_handler, self.runtime.default_handler
            )));
        }
        for (name, handler) in &self.runtime.handlers {
            match (&handler.path, name.as_str()) {
                (Some(_), EMBEDDED_HANDLER) => {
                    return Err(ConfigError::Invalid(format!(
                        "runtime.handlers.{EMBEDDED_HANDLER} runs inside criox and takes no path"
                    )));
                }
                (None, other) if other != EMBEDDED_HANDLER => {
                    return Err(ConfigError::Invalid(format!(
                        "runtime.handlers.{other}.path is required for a runc-compatible handler"
                    )));
                }
                (Some(p), _) if !p.is_absolute() => {
                    return Err(ConfigError::Invalid(format!(
                        "runtime.handlers.{name}.path must be absolute, got {p:?}"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
