//! `criox config`: the effective configuration as TOML, every key with its comment.

use std::fmt::Write as _;
use std::path::Path;

use super::Config;

impl Config {
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
            "Cgroup driver: cgroupfs or systemd (default: systemd where it is PID 1); the kubelet's \
             cgroupDriver must match. With systemd a pod's cgroup_parent is a slice name and each \
             container runs in a transient scope criox-<id>.scope in it.",
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
