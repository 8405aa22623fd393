//! One function per runc verb.

use std::io::Read;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, create_cgroup_manager};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Process, Spec, UserBuilder};

use super::{Cli, Command, CreateArgs, ExecArgs};
use crate::backend::{Backend, BackendError, CreateOptions, Stdio};
use crate::embedded::{Embedded, ExecRequest, error_chain, exec};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Usage(String),
    #[error("{what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(String) -> CliError {
    let path = path.to_path_buf();
    move |message| CliError::File {
        what,
        path,
        message,
    }
}

pub fn run(cli: &Cli) -> Result<i32, CliError> {
    let rt = Embedded::new(&cli.root);
    match &cli.command {
        Command::Create(args) => create(&rt, args).map(|_| 0),
        Command::Start { id } => rt.start(id).map(|()| 0).map_err(Into::into),
        Command::State { id } => {
            let state = rt.state(id)?;
            let json =
                serde_json::to_string_pretty(&state).map_err(|e| CliError::Usage(e.to_string()))?;
            println!("{json}");
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = parse_signal(signal)
                .ok_or_else(|| CliError::Usage(format!("unknown signal {signal:?}")))?;
            rt.kill(id, sig, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => rt.delete(id, *force).map(|()| 0).map_err(Into::into),
        Command::Run {
            create: args,
            detach,
        } => run_container(&rt, args, *detach),
        Command::Exec(args) => exec_process(&rt, args),
        Command::Ps { format, id } => ps(&rt, id, format),
        Command::Pause { id } => rt.pause(id).map(|()| 0).map_err(Into::into),
        Command::Resume { id } => rt.resume(id).map(|()| 0).map_err(Into::into),
        Command::Update { resources, id } => {
            let mut text = String::new();
            if resources.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| file_err("resources", resources)(e.to_string()))?;
            } else {
                text = std::fs::read_to_string(resources)
                    .map_err(|e| file_err("resources", resources)(e.to_string()))?;
            }
            let res: LinuxResources = serde_json::from_str(&text)
                .map_err(|e| file_err("resources", resources)(e.to_string()))?;
            rt.update(id, &res)?;
            Ok(0)
        }
        Command::Features => {
            println!("{}", features());
            Ok(0)
        }
        Command::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(file_err("spec", &path)("already exists".to_string()));
            }
            let spec = if *rootless {
                Spec::rootless(
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                )
            } else {
                Spec::default()
            };
            let json = serde_json::to_string_pretty(&spec)
                .map_err(|e| file_err("spec", &path)(e.to_string()))?;
            std::fs::write(&path, json).map_err(|e| file_err("spec", &path)(e.to_string()))?;
            Ok(0)
        }
    }
}

/// A signal by number, name, or name without the SIG prefix.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

fn set_subreaper() {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Waits for `pid` (a child of this subreaper) and returns its exit status as a shell does.
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 255,
        }
    }
}

fn create(rt: &Embedded, args: &CreateArgs) -> Result<i32, CliError> {
    let bundle = std::fs::canonicalize(&args.bundle)
        .map_err(|e| file_err("bundle", &args.bundle)(e.to_string()))?;
    Ok(rt.create(CreateOptions {
        id: &args.id,
        bundle: &bundle,
        pid_file: args.pid_file.as_deref(),
        console_socket: args.console_socket.as_deref(),
        stdio: Stdio::default(),
    })?)
}

fn run_container(rt: &Embedded, args: &CreateArgs, detach: bool) -> Result<i32, CliError> {
    if !detach {
        set_subreaper();
    }
    let pid = create(rt, args)?;
    if let Err(e) = rt.start(&args.id) {
        let _ = rt.delete(&args.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = wait_for(pid);
    rt.delete(&args.id, true)?;
    Ok(code)
}

fn exec_process(rt: &Embedded, args: &ExecArgs) -> Result<i32, CliError> {
    let process = match &args.process {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_err("process", path)(e.to_string()))?;
            serde_json::from_str::<Process>(&text)
                .map_err(|e| file_err("process", path)(e.to_string()))?
        }
        None => process_from_args(rt, args)?,
    };
    let terminal = process.terminal().unwrap_or(false);
    if terminal && args.console_socket.is_none() {
        return Err(CliError::Usage(format!(
            "container {}: exec with a terminal needs --console-socket",
            args.id
        )));
    }
    if !args.detach {
        set_subreaper();
    }
    let pid = exec(
        rt,
        ExecRequest {
            id: &args.id,
            process,
            pid_file: args.pid_file.as_deref(),
            console_socket: args.console_socket.as_deref(),
            stdio: Stdio::default(),
        },
    )?;
    if args.detach {
        return Ok(0);
    }
    Ok(wait_for(pid))
}

/// A process spec from exec's flags, on the base of the container's own process.
fn process_from_args(rt: &Embedded, args: &ExecArgs) -> Result<Process, CliError> {
    if args.command.is_empty() {
        return Err(CliError::Usage(format!(
            "container {}: exec needs a command or --process",
            args.id
        )));
    }
    let state = rt.state(&args.id)?;
    let config = state.bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| file_err("config", &config)(error_chain(&e)))?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    if !args.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(args.env.iter().cloned());
        p.set_env(Some(env));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(user) = &args.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| CliError::Usage(format!("--user {user:?}: want uid[:gid]")))
        };
        let u = UserBuilder::default()
            .uid(parse(uid)?)
            .gid(parse(gid)?)
            .build()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        p.set_user(u);
    }
    Ok(p)
}

fn ps(rt: &Embedded, id: &str, format: &str) -> Result<i32, CliError> {
    let c = rt.load(id)?;
    let cfg = c
        .spec()
        .map_err(|e| BackendError::failed(id, "ps", error_chain(&e)))?;
    let manager = create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: cfg.cgroup_path,
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| BackendError::failed(id, "ps", error_chain(&e)))?;
    let pids: Vec<i32> = manager
        .get_all_pids()
        .map_err(|e| BackendError::failed(id, "ps", error_chain(&e)))?
        .into_iter()
        .map(|p| p.as_raw())
        .collect();
    if format == "json" {
        println!("{}", serde_json::to_string(&pids).unwrap_or_default());
    } else {
        println!("PID\tCMD");
        for pid in pids {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            println!("{pid}\t{}", comm.trim());
        }
    }
    Ok(0)
}

fn features() -> String {
    let namespaces = [
        "cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time",
    ];
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                          "private", "rprivate", "shared", "rshared", "slave", "rslave", "relatime",
                          "norelatime", "strictatime", "nostrictatime", "tmpcopyup", "idmap", "rro"],
        "linux": {
            "namespaces": namespaces,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
        },
        "annotations": {
            "org.criox.runtime": "libcontainer 0.7 (embedded)",
        },
    })
    .to_string()
}
