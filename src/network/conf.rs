//! Loading the CNI network configuration: the first `.conflist`, `.conf` or `.json` file
//! in name order, a single-plugin `.conf` being wrapped into a list.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("no CNI network configuration found in {0}")]
    NoConfig(PathBuf),
    #[error("cannot read CNI configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid CNI configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A network configuration list, as loaded; plugins keep their raw JSON so that fields
/// criox does not know reach the plugins unchanged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    /// Where it was loaded from, for messages.
    pub source: PathBuf,
}

impl NetworkList {
    pub fn plugin_type(plugin: &Value) -> &str {
        plugin.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

/// Loads the first valid-looking file of `dir` in name order.
pub fn load_dir(dir: &Path) -> Result<NetworkList, ConfError> {
    let entries = std::fs::read_dir(dir).map_err(|_| ConfError::NoConfig(dir.to_path_buf()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
        })
        .collect();
    files.sort();
    let first = files
        .into_iter()
        .next()
        .ok_or_else(|| ConfError::NoConfig(dir.to_path_buf()))?;
    load_file(&first)
}

pub fn load_file(path: &Path) -> Result<NetworkList, ConfError> {
    let text = std::fs::read(path).map_err(|source| ConfError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| ConfError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let value: Value = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".to_string()))?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing \"name\"".to_string()))?
        .to_string();
    let cni_version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.4.0")
        .to_string();
    let plugins = match obj.get("plugins") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(invalid("\"plugins\" is not a list".to_string())),
        // A single-plugin configuration is its own only plugin.
        None => vec![value.clone()],
    };
    if plugins.is_empty() {
        return Err(invalid("\"plugins\" is empty".to_string()));
    }
    for (i, plugin) in plugins.iter().enumerate() {
        if NetworkList::plugin_type(plugin).is_empty() {
            return Err(invalid(format!("plugin {i} has no \"type\"")));
        }
    }
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
        source: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_file_in_name_order_wins_and_conf_is_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_dir(dir.path()), Err(ConfError::NoConfig(_))));
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"bridge","bridge":"x0"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("00-ignored.txt"), "nothing").unwrap();
        let list = load_dir(dir.path()).unwrap();
        assert_eq!(list.name, "a");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["bridge"], "x0");
        std::fs::remove_file(dir.path().join("10-a.conf")).unwrap();
        let list = load_dir(dir.path()).unwrap();
        assert_eq!((list.name.as_str(), list.plugins.len()), ("b", 2));
    }

    #[test]
    fn broken_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.conflist"),
            r#"{"name":"x","plugins":[{}]}"#,
        )
        .unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.conflist") && err.contains("type"), "{err}");
    }
}
