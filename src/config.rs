//! The daemon's configuration: a TOML file, drop-ins from `<config dir>/criox.conf.d/*.toml`
//! applied in name order, then command-line flags.
//!
//! Each file is checked on its own against the full schema, so an unknown key or a wrong
//! type is reported with that file's path and line; the files are then merged as tables and
//! the merged table becomes the effective configuration.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: metadata store, image blobs, layers, container bundles.
    pub root: PathBuf,
    /// Volatile data: the socket, pinned namespaces, runtime state, monitor sockets.
    pub state: PathBuf,
    /// The gRPC socket; empty means `<state>/criox.sock`.
    pub listen: PathBuf,
    /// tracing filter: error, warn, info, debug, trace, or a full directive.
    pub log_level: String,
    pub image: ImageConfig,
    pub network: NetworkConfig,
    pub streaming: StreamingConfig,
    pub runtime: RuntimeConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    pub registries_config: PathBuf,
    pub signature_policy: PathBuf,
    /// Extra CA certificates per registry: `<dir>/<host[:port]>/*.crt`.
    pub certs_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub cni_config_dir: PathBuf,
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// Seconds a CNI plugin may run before it is killed and the call fails.
    pub cni_plugin_timeout: u64,
    /// A conflist template rendered into `cni_config_dir` when the kubelet sends the
    /// node's pod CIDR; empty for none.
    pub cni_config_template: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    pub address: String,
    pub port: u16,
    /// PEM certificate chain; with `tls_key_file`, the server speaks HTTPS.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub address: String,
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            address: "127.0.0.1".to_string(),
            port: 9537,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    Cgroupfs,
    Systemd,
}

impl CgroupManager {
    /// systemd owns the cgroup tree only where it runs as the init system.
    pub fn detect() -> Self {
        if Path::new("/run/systemd/system").is_dir() {
            CgroupManager::Systemd
        } else {
            CgroupManager::Cgroupfs
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CgroupManager::Cgroupfs => "cgroupfs",
            CgroupManager::Systemd => "systemd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub default_handler: String,
    pub cgroup_manager: CgroupManager,
    pub handlers: BTreeMap<String, HandlerConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlerConfig {
    /// A runc-compatible binary; absent for the embedded handler.
    pub path: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/criox"),
            state: PathBuf::from("/run/criox"),
            listen: PathBuf::new(),
            log_level: "info".to_string(),
            image: ImageConfig::default(),
            network: NetworkConfig::default(),
            streaming: StreamingConfig::default(),
            runtime: RuntimeConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            registries_config: PathBuf::from("/etc/containers/registries.conf"),
            signature_policy: PathBuf::from("/etc/containers/policy.json"),
            certs_dir: PathBuf::from("/etc/containers/certs.d"),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            cni_config_dir: PathBuf::from("/etc/cni/net.d"),
            cni_plugin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cni_plugin_timeout: 60,
            cni_config_template: PathBuf::new(),
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".to_string(),
            port: 0,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(EMBEDDED_HANDLER.to_string(), HandlerConfig::default());
        RuntimeConfig {
            default_handler: EMBEDDED_HANDLER.to_string(),
            cgroup_manager: CgroupManager::detect(),
            handlers,
        }
    }
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

    fn validate(&self) -> Result<(), ConfigError> {
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

    /// The gRPC socket path, after defaulting to `<state>/criox.sock`.
    pub fn listen_path(&self) -> PathBuf {
        if self.listen.as_os_str().is_empty() {
            self.state.join("criox.sock")
        } else {
            self.listen.clone()
        }
    }

    /// The effective configuration as TOML, every key with a comment, for `criox config`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let q = |p: &Path| toml_string(&p.to_string_lossy());
        out.push_str("# criox configuration. Drop-ins in criox.conf.d/*.toml beside this file\n");
        out.push_str("# override it in name order; command-line flags override both.\n\n");
        line(
            &mut out,
            "Persistent data: metadata, image blobs and layers, container bundles.",
            "root",
            &q(&self.root),
        );
        line(
            &mut out,
            "Volatile data: the socket, pinned namespaces, runtime and monitor state.",
            "state",
            &q(&self.state),
        );
        line(
            &mut out,
            "The CRI gRPC unix socket; empty means <state>/criox.sock.",
            "listen",
            &q(&self.listen),
        );
        line(
            &mut out,
            "Log filter: error, warn, info, debug, trace, or a tracing directive.",
            "log_level",
            &toml_string(&self.log_level),
        );

        out.push_str("\n[image]\n");
        line(
            &mut out,
            "Registries, mirrors and short names, in containers-registries.conf(5) v2 format.",
            "registries_config",
            &q(&self.image.registries_config),
        );
        line(
            &mut out,
            "Image trust policy, in containers-policy.json(5) format.",
            "signature_policy",
            &q(&self.image.signature_policy),
        );
        line(
            &mut out,
            "CA certificates trusted for registries, as <dir>/<host[:port]>/*.crt (containers-certs.d(5)).",
            "certs_dir",
            &q(&self.image.certs_dir),
        );

        out.push_str("\n[network]\n");
        line(
            &mut out,
            "Directory of CNI network configurations; the first in name order is used.",
            "cni_config_dir",
            &q(&self.network.cni_config_dir),
        );
        let dirs: Vec<String> = self.network.cni_plugin_dirs.iter().map(|d| q(d)).collect();
        line(
            &mut out,
            "Directories searched in order for CNI plugin binaries.",
            "cni_plugin_dirs",
            &format!("[{}]", dirs.join(", ")),
        );
        line(
            &mut out,
            "Seconds a CNI plugin call may take before it is killed and fails.",
            "cni_plugin_timeout",
            &self.network.cni_plugin_timeout.to_string(),
        );
        line(
            &mut out,
            "CNI conflist template written to cni_config_dir as 10-criox-net.conflist once the kubelet \
             sends the pod CIDR (UpdateRuntimeConfig) and no configuration is there yet; \
             {{.PodCIDR}}, {{range $i, $r := .PodCIDRRanges}}, {{range .Routes}}, {{if $i}} and {{end}} \
             are replaced. Empty: the pod CIDR is only remembered.",
            "cni_config_template",
            &q(&self.network.cni_config_template),
        );

        out.push_str("\n[streaming]\n");
        line(
            &mut out,
            "Address of the exec/attach/port-forward HTTP server.",
            "address",
            &toml_string(&self.streaming.address),
        );
        line(
            &mut out,
            "Port of the streaming server; 0 picks a free port.",
            "port",
            &self.streaming.port.to_string(),
        );
        line(
            &mut out,
            "PEM certificate chain of the streaming server; with tls_key_file it serves HTTPS \
             and hands out https:// URLs. Empty: plain HTTP.",
            "tls_cert_file",
            &toml_string(&self.streaming.tls_cert_file.to_string_lossy()),
        );
        line(
            &mut out,
            "PEM private key (PKCS#8, PKCS#1 or SEC1) of tls_cert_file.",
            "tls_key_file",
            &toml_string(&self.streaming.tls_key_file.to_string_lossy()),
        );

        out.push_str("\n[metrics]\n");
        line(
            &mut out,
            "Serve Prometheus metrics over HTTP.",
            "enabled",
            &self.metrics.enabled.to_string(),
        );
        line(
            &mut out,
            "Address of the metrics endpoint.",
            "address",
            &toml_string(&self.metrics.address),
        );
        line(
            &mut out,
            "Port of the metrics endpoint (GET /metrics); 0 picks a free port.",
            "port",
            &self.metrics.port.to_string(),
        );

        out.push_str("\n[runtime]\n");
        line(
            &mut out,
            "Handler used when a pod names no runtime handler.",
            "default_handler",
            &toml_string(&self.runtime.default_handler),
        );
        line(
            &mut out,
            "Cgroup driver: cgroupfs or systemd (default: systemd where it is PID 1).",
            "cgroup_manager",
            &toml_string(self.runtime.cgroup_manager.as_str()),
        );
        for (name, handler) in &self.runtime.handlers {
            let _ = writeln!(out, "\n[runtime.handlers.{}]", toml_key(name));
            match &handler.path {
                Some(path) => line(
                    &mut out,
                    "A runc-compatible runtime binary (runc, crun, youki).",
                    "path",
                    &q(path),
                ),
                None => out.push_str(
                    "# Runs containers with the runtime linked into criox; takes no path.\n",
                ),
            }
        }
        out
    }
}

fn line(out: &mut String, comment: &str, key: &str, value: &str) {
    let _ = writeln!(out, "# {comment}\n{key} = {value}");
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        toml_string(s)
    }
}

/// Checks one file against the schema (for errors with its path and line) and returns
/// its table for merging.
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
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

fn drop_in_files(config_path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
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
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn missing_default_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            Config::load(&dir.path().join("criox.toml"), false, &Overrides::default()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen_path(), PathBuf::from("/run/criox/criox.sock"));
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            Config::load(&dir.path().join("nope.toml"), true, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn drop_ins_apply_in_name_order_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "criox.toml",
            "root = \"/a\"\n[streaming]\nport = 1\n",
        );
        write(
            dir.path(),
            "criox.conf.d/20-late.toml",
            "[streaming]\nport = 3\n",
        );
        write(
            dir.path(),
            "criox.conf.d/10-early.toml",
            "[streaming]\nport = 2\naddress = \"::1\"\n",
        );
        write(dir.path(), "criox.conf.d/ignored.txt", "not toml at all");
        let overrides = Overrides {
            state: Some(PathBuf::from("/s")),
            ..Default::default()
        };
        let config = Config::load(&main, true, &overrides).unwrap();
        assert_eq!(config.root, PathBuf::from("/a"));
        assert_eq!(config.state, PathBuf::from("/s"));
        assert_eq!(config.streaming.port, 3);
        assert_eq!(config.streaming.address, "::1");
        assert_eq!(config.listen_path(), PathBuf::from("/s/criox.sock"));
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "criox.toml",
            "root = \"/a\"\n\n[network]\nbogus_key = 1\n",
        );
        let err = Config::load(&main, true, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("criox.toml"), "{err}");
        assert!(err.contains("bogus_key"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn wrong_type_in_drop_in_names_the_drop_in() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "criox.toml", "");
        write(
            dir.path(),
            "criox.conf.d/50-x.toml",
            "[streaming]\nport = \"eighty\"\n",
        );
        let err = Config::load(&main, true, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("50-x.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn handlers_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "criox.toml", "[runtime.handlers.runc]\n");
        let err = Config::load(&main, true, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime.handlers.runc.path"), "{err}");

        let main = write(
            dir.path(),
            "criox.toml",
            "[runtime]\ndefault_handler = \"kata\"\n",
        );
        let err = Config::load(&main, true, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("kata"), "{err}");
    }

    #[test]
    fn rendered_config_reads_back_identically_and_comments_every_key() {
        let mut config = Config::default();
        config.runtime.handlers.insert(
            "runc".to_string(),
            HandlerConfig {
                path: Some(PathBuf::from("/usr/sbin/runc")),
            },
        );
        let text = config.render();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains(" = ") && !l.starts_with('#') {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "key without comment: {l}"
                );
            }
        }
    }
}
