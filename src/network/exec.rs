//! Running one CNI plugin: the CNI_* environment, the network configuration on stdin,
//! the result or error on stdout, and a time limit after which the plugin is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    NotFound { plugin: String, dirs: String },
    #[error("cannot run CNI plugin {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} did not finish within {timeout:?} and was killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    Failed {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("CNI plugin {plugin} {command} printed an invalid result: {source}")]
    BadResult {
        plugin: String,
        command: &'static str,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// What every plugin call of one pod shares.
pub struct Invocation<'a> {
    pub container_id: &'a str,
    /// Empty when the namespace is already gone (DEL must still release resources).
    pub netns: &'a str,
    pub ifname: &'a str,
    pub cni_args: &'a str,
    pub plugin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

pub fn find_plugin(kind: &str, dirs: &[PathBuf]) -> Result<PathBuf, ExecError> {
    if !kind.contains('/') {
        for dir in dirs {
            let path = dir.join(kind);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    Err(ExecError::NotFound {
        plugin: kind.to_string(),
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    })
}

/// Runs `plugin` with `config` on stdin. ADD returns the plugin's result; DEL and CHECK
/// return `Value::Null`.
pub async fn run(
    command: Command,
    kind: &str,
    config: &Value,
    inv: &Invocation<'_>,
) -> Result<Value, ExecError> {
    let _phase = crate::timeline::phase(match command {
        Command::Add => "cni_plugin_add",
        Command::Del => "cni_plugin_del",
        Command::Check => "cni_plugin_check",
    });
    let path = find_plugin(kind, inv.plugin_dirs)?;
    let cni_path = std::env::join_paths(inv.plugin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stdin_data = serde_json::to_vec(config).unwrap_or_default();
    let mut child = tokio::process::Command::new(&path)
        .env_clear()
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.cni_args)
        .env("CNI_PATH", cni_path)
        // iptables and other tools the plugins call are found through PATH.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            path: path.clone(),
            source,
        })?;
    let mut stdin = child.stdin.take();
    let work = async {
        if let Some(stdin) = stdin.as_mut() {
            // A plugin that exits without reading its config fails on its own terms.
            let _ = stdin.write_all(&stdin_data).await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(inv.timeout, work).await {
        Ok(result) => result.map_err(|source| ExecError::Spawn {
            path: path.clone(),
            source,
        })?,
        Err(_) => {
            return Err(ExecError::Timeout {
                plugin: kind.to_string(),
                command: command.as_str(),
                timeout: inv.timeout,
            });
        }
    };
    if !output.status.success() {
        return Err(ExecError::Failed {
            plugin: kind.to_string(),
            command: command.as_str(),
            message: error_message(&output.stdout, &output.stderr, output.status),
        });
    }
    if command != Command::Add {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&output.stdout).map_err(|source| ExecError::BadResult {
        plugin: kind.to_string(),
        command: command.as_str(),
        source,
    })
}

/// The CNI error object's `msg` and `details` when the plugin printed one, else its
/// stderr.
fn error_message(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    if let Ok(err) = serde_json::from_slice::<Value>(stdout) {
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = err.get("details").and_then(Value::as_str).unwrap_or("");
        let code = err.get("code").and_then(Value::as_u64).unwrap_or(0);
        if !msg.is_empty() {
            return if details.is_empty() {
                format!("{msg} (code {code})")
            } else {
                format!("{msg}: {details} (code {code})")
            };
        }
    }
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("exited with {status}")
    } else {
        format!("{stderr} ({status})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inv(dirs: &[PathBuf], timeout: Duration) -> Invocation<'_> {
        Invocation {
            container_id: "c1",
            netns: "/x",
            ifname: "eth0",
            cni_args: "K8S_POD_NAME=a",
            plugin_dirs: dirs,
            timeout,
        }
    }

    #[tokio::test]
    async fn env_and_stdin_reach_the_plugin_and_errors_are_read() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echoer",
            r#"read -r conf; printf '{"ips":[{"address":"10.0.0.2/24"}],"env":"%s %s %s %s","conf":%s}' "$CNI_COMMAND" "$CNI_NETNS" "$CNI_ARGS" "$CNI_IFNAME" "$conf""#,
        );
        script(
            dir.path(),
            "failer",
            r#"echo '{"code":7,"msg":"no addresses","details":"pool empty"}'; exit 1"#,
        );
        let dirs = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        let config = serde_json::json!({"type": "echoer", "name": "n"});
        let out = run(
            Command::Add,
            "echoer",
            &config,
            &inv(&dirs, Duration::from_secs(5)),
        )
        .await
        .unwrap();
        assert_eq!(out["env"], "ADD /x K8S_POD_NAME=a eth0");
        assert_eq!(out["conf"]["name"], "n");
        let err = run(
            Command::Add,
            "failer",
            &config,
            &inv(&dirs, Duration::from_secs(5)),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("no addresses: pool empty (code 7)"), "{err}");
        let err = run(
            Command::Add,
            "absent",
            &config,
            &inv(&dirs, Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }));
    }

    #[tokio::test]
    async fn a_hanging_plugin_is_killed_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "hang", "echo $$ > \"$0.pid\"; exec sleep 30");
        let dirs = vec![dir.path().to_path_buf()];
        let err = run(
            Command::Add,
            "hang",
            &serde_json::json!({}),
            &inv(&dirs, Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(dir.path().join("hang.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // kill_on_drop reaps asynchronously; give it a moment.
        let mut gone = false;
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "plugin {pid} still running");
    }
}
