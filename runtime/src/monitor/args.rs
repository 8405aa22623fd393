//! The monitor's command line, built by the launcher and parsed by the monitor.

use std::ffi::OsString;
use std::path::PathBuf;

pub use crate::choice::RuntimeChoice;
use crate::request::LaunchRequest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorArgs {
    /// The launch as the daemon asked for it.
    pub request: LaunchRequest,
    pub runtime: RuntimeChoice,
    pub runtime_root: PathBuf,
    /// An external runtime is driven with `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// Descriptor on which the creation result is reported.
    pub sync_fd: Option<i32>,
    /// Descriptor to read one byte from before creating: the launcher's word that the
    /// bundle is ready. End of file means it gave up, and the monitor leaves.
    pub go_fd: Option<i32>,
    /// Cgroup v1 directories the monitor moves itself into before anything else, so that
    /// it and all it forks live there.
    pub join_cgroups: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("monitor: {0} needs a value")]
    MissingValue(String),
    #[error("monitor: unknown argument {0}")]
    Unknown(String),
    #[error("monitor: --{0} is required")]
    Required(&'static str),
    #[error("monitor: --{0}: not a number: {1}")]
    BadFd(&'static str, String),
}

impl MonitorArgs {
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--id".into(),
            self.request.id.clone().into(),
            "--bundle".into(),
            self.request.bundle.clone().into(),
            "--state-dir".into(),
            self.request.state_dir.clone().into(),
            "--runtime".into(),
            match &self.runtime {
                RuntimeChoice::Embedded => "embedded".into(),
                RuntimeChoice::External(p) => p.clone().into(),
            },
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
        ];
        if let Some(p) = &self.request.log_path {
            a.push("--log-path".into());
            a.push(p.clone().into());
        }
        if let Some(fd) = self.sync_fd {
            a.push("--sync-fd".into());
            a.push(fd.to_string().into());
        }
        if let Some(fd) = self.go_fd {
            a.push("--go-fd".into());
            a.push(fd.to_string().into());
        }
        for procs in &self.join_cgroups {
            a.push("--join-cgroup".into());
            a.push(procs.clone().into());
        }
        for (flag, on) in [
            ("--stdin", self.request.stdin),
            ("--stdin-once", self.request.stdin_once),
            ("--terminal", self.request.terminal),
            ("--systemd-cgroup", self.systemd_cgroup),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }

    pub fn parse(args: &[OsString]) -> Result<Self, ArgsError> {
        let mut id = None;
        let mut bundle = None;
        let mut state_dir = None;
        let mut log_path = None;
        let mut runtime = None;
        let mut runtime_root = None;
        let mut sync_fd = None;
        let mut go_fd = None;
        let mut join_cgroups = Vec::new();
        let (mut stdin, mut stdin_once, mut terminal) = (false, false, false);
        let mut systemd_cgroup = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let name = arg.to_string_lossy().into_owned();
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| ArgsError::MissingValue(name.clone()))
            };
            match name.as_str() {
                "--id" => id = Some(value()?.to_string_lossy().into_owned()),
                "--bundle" => bundle = Some(PathBuf::from(value()?)),
                "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
                "--log-path" => log_path = Some(PathBuf::from(value()?)),
                "--runtime" => {
                    let v = value()?;
                    runtime = Some(if v == "embedded" {
                        RuntimeChoice::Embedded
                    } else {
                        RuntimeChoice::External(PathBuf::from(v))
                    })
                }
                "--runtime-root" => runtime_root = Some(PathBuf::from(value()?)),
                "--sync-fd" => {
                    let v = value()?.to_string_lossy().into_owned();
                    sync_fd = Some(v.parse().map_err(|_| ArgsError::BadFd("sync-fd", v))?);
                }
                "--go-fd" => {
                    let v = value()?.to_string_lossy().into_owned();
                    go_fd = Some(v.parse().map_err(|_| ArgsError::BadFd("go-fd", v))?);
                }
                "--join-cgroup" => join_cgroups.push(PathBuf::from(value()?)),
                "--stdin" => stdin = true,
                "--stdin-once" => stdin_once = true,
                "--terminal" => terminal = true,
                "--systemd-cgroup" => systemd_cgroup = true,
                _ => return Err(ArgsError::Unknown(name)),
            }
        }
        Ok(MonitorArgs {
            request: LaunchRequest {
                id: id.ok_or(ArgsError::Required("id"))?,
                bundle: bundle.ok_or(ArgsError::Required("bundle"))?,
                state_dir: state_dir.ok_or(ArgsError::Required("state-dir"))?,
                log_path,
                stdin,
                stdin_once,
                terminal,
            },
            runtime: runtime.unwrap_or(RuntimeChoice::Embedded),
            runtime_root: runtime_root.ok_or(ArgsError::Required("runtime-root"))?,
            systemd_cgroup,
            sync_fd,
            go_fd,
            join_cgroups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let a = MonitorArgs {
            request: LaunchRequest {
                id: "c".into(),
                bundle: "/b".into(),
                state_dir: "/s".into(),
                log_path: Some("/l".into()),
                stdin: true,
                stdin_once: false,
                terminal: true,
            },
            runtime: RuntimeChoice::External("/usr/sbin/runc".into()),
            runtime_root: "/r".into(),
            systemd_cgroup: true,
            sync_fd: Some(3),
            go_fd: Some(4),
            join_cgroups: vec!["/g/a/m".into(), "/g/b/m".into()],
        };
        assert_eq!(MonitorArgs::parse(&a.to_args()).unwrap(), a);
        let bad = ["--go-fd".into(), "four".into()];
        assert_eq!(
            MonitorArgs::parse(&bad).unwrap_err().to_string(),
            "monitor: --go-fd: not a number: four"
        );
    }
}
