//! [`Runtime`]: what the daemon holds per runtime handler.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::backend::{Backend, ContainerState};
use crate::error::RuntimeError;
use crate::external::External;
use crate::launch::PendingLaunch;
use crate::monitor::files;
use crate::monitor::{ExitRecord, RuntimeChoice};
use crate::request::{LaunchRequest, Launched, MonitorCgroup};

/// A process to run in a running container, for [`Runtime::exec_command`].
#[derive(Debug, Clone, Copy)]
pub struct ExecSpec<'a> {
    pub id: &'a str,
    /// The process as OCI `process` JSON.
    pub process_file: &'a Path,
    /// Where the runtime records the process's pid; what ends the process early.
    pub pid_file: &'a Path,
    /// With a terminal: the unix socket on which the terminal's master arrives.
    pub console_socket: Option<&'a Path>,
}

/// One OCI runtime: the embedded libcontainer or a runc-compatible binary, with its state
/// under `root`. Every method blocks; call them from blocking threads.
#[derive(Debug, Clone)]
pub struct Runtime {
    choice: RuntimeChoice,
    root: PathBuf,
    exe: PathBuf,
    systemd_cgroup: bool,
}

impl Runtime {
    /// The embedded runtime with state under `root`.
    pub fn embedded(root: impl Into<PathBuf>) -> Self {
        Runtime::new(RuntimeChoice::Embedded, root)
    }

    /// A runc-compatible binary at `binary` with state under `root`.
    pub fn external(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Runtime::new(RuntimeChoice::External(binary.into()), root)
    }

    pub fn new(choice: RuntimeChoice, root: impl Into<PathBuf>) -> Self {
        Runtime {
            choice,
            root: root.into(),
            // The running image, not the file at its path: an upgrade replaces that file
            // while the daemon runs, and a monitor must speak this daemon's protocol.
            exe: PathBuf::from("/proc/self/exe"),
            systemd_cgroup: false,
        }
    }

    /// Under the systemd cgroup driver: an external runtime is driven with
    /// `--systemd-cgroup` (as CRI-O and containerd drive runc and crun), so it makes the
    /// container's scope itself from a `slice:prefix:name` cgroupsPath and keeps its
    /// resources as unit properties. The embedded runtime is unaffected: it manages the
    /// scope's cgroupfs paths, and its caller makes the scope.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on && matches!(self.choice, RuntimeChoice::External(_));
        self
    }

    /// Whether this runtime makes its containers' systemd scopes itself: their cgroupsPath
    /// must then be `slice:prefix:name`.
    pub fn systemd_cgroup(&self) -> bool {
        self.systemd_cgroup
    }

    /// The criox binary that serves `criox monitor` and `criox oci` (default: this process's
    /// executable).
    pub fn with_exe(mut self, exe: impl Into<PathBuf>) -> Self {
        self.exe = exe.into();
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every verb runs in a process of its own: this process has many threads, and
    /// libcontainer changes process-wide state (the working directory) while it works.
    fn backend(&self) -> External {
        crate::choice::command_line(&self.choice, &self.root, &self.exe, self.systemd_cgroup)
    }

    /// The runc command line of this runtime (`criox oci --root …` for the embedded one).
    pub fn oci_command(&self) -> Command {
        self.backend().command()
    }

    /// The runtime's `exec` command for `spec`. It runs in the foreground and exits with
    /// the process's exit code. With a terminal an external runtime runs detached (runc
    /// hands the terminal over only then) under `criox exec-relay`, which waits in its
    /// place.
    pub fn exec_command(&self, spec: &ExecSpec<'_>) -> Command {
        let mut cmd = match (&self.choice, spec.console_socket) {
            (RuntimeChoice::External(_), Some(_)) => {
                let runtime = self.oci_command();
                let mut cmd = Command::new(&self.exe);
                cmd.arg(crate::external::exec_relay::SUBCOMMAND)
                    .arg(spec.pid_file)
                    .arg(runtime.get_program())
                    .args(runtime.get_args())
                    .arg("exec")
                    .arg("--detach");
                cmd
            }
            _ => {
                let mut cmd = self.oci_command();
                cmd.arg("exec");
                cmd
            }
        };
        cmd.arg("--pid-file")
            .arg(spec.pid_file)
            .arg("--process")
            .arg(spec.process_file);
        if let Some(sock) = spec.console_socket {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.arg(spec.id);
        cmd
    }

    /// Starts a monitor that creates the container, and waits until it is created.
    pub fn launch(&self, req: &LaunchRequest) -> Result<Launched, RuntimeError> {
        self.prepare_launch(req)?.create()
    }

    /// Starts the monitor for `req` without creating the container yet, so that its
    /// start-up overlaps the preparation of the bundle; [`PendingLaunch::create`] goes on.
    pub fn prepare_launch(&self, req: &LaunchRequest) -> Result<PendingLaunch, RuntimeError> {
        self.prepare_launch_in(req, &MonitorCgroup::default())
    }

    /// [`Runtime::prepare_launch`] with a monitor that lives in `cgroup` (a cgroup of its
    /// own, away from the caller's) from before it forks anything.
    pub fn prepare_launch_in(
        &self,
        req: &LaunchRequest,
        cgroup: &MonitorCgroup,
    ) -> Result<PendingLaunch, RuntimeError> {
        crate::launch::start(
            &self.exe,
            &self.choice,
            &self.root,
            self.systemd_cgroup,
            req,
            cgroup,
        )
    }

    /// Runs the process of a created container. The embedded runtime starts a container
    /// without poststart hooks from this process: a `criox oci start` would cost a process
    /// (about 2 ms of StartContainer's 3) to do the same.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        if matches!(self.choice, RuntimeChoice::Embedded)
            && crate::embedded::Embedded::new(&self.root).start_without_hooks(id)?
        {
            return Ok(());
        }
        Ok(self.backend().start(id)?)
    }

    /// Sends `signal` to the init process, or to every process of the container.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        Ok(self.backend().kill(id, signal, all)?)
    }

    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        Ok(self.backend().state(id)?)
    }

    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        Ok(self.backend().pause(id)?)
    }

    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        Ok(self.backend().resume(id)?)
    }

    /// Applies new cgroup limits to a running container.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        Ok(self.backend().update(id, resources)?)
    }

    /// Deletes the container from the runtime (killing it first when `force`), waits for its
    /// monitor to record the exit and leave, then empties and removes `state_dir`. A
    /// container the runtime no longer knows is not an error when `state_dir` shows it ran.
    pub fn delete(&self, id: &str, state_dir: &Path, force: bool) -> Result<(), RuntimeError> {
        // As with start: the embedded runtime deletes a container without poststop hooks
        // from this process.
        let deleted = match self.choice {
            RuntimeChoice::Embedded => {
                match crate::embedded::Embedded::new(&self.root).delete_without_hooks(id, force) {
                    Ok(true) => Ok(()),
                    Ok(false) => self.backend().delete(id, force),
                    Err(e) => Err(e),
                }
            }
            RuntimeChoice::External(_) => self.backend().delete(id, force),
        };
        match deleted {
            Ok(()) => {}
            Err(crate::backend::BackendError::NotFound { .. })
                if state_dir.join(files::EXIT_FILE).exists()
                    || state_dir.join(files::PID_FILE).exists() => {}
            Err(e) => return Err(e.into()),
        }
        // The monitor removes its pid file just before leaving: wait for the process itself.
        // Only the very process recorded is killed, never one that got its pid since.
        if let Some(monitor) = crate::monitor_client::monitor_process(state_dir)
            && !monitor.wait_gone(Duration::from_secs(10))
        {
            monitor.signal(libc::SIGKILL);
        }
        for name in files::ALL {
            let _ = std::fs::remove_file(state_dir.join(name));
        }
        let _ = std::fs::remove_dir(state_dir);
        Ok(())
    }

    /// The exit record, once the container has exited.
    pub fn exit_record(&self, state_dir: &Path) -> Option<ExitRecord> {
        ExitRecord::read(state_dir).ok().flatten()
    }
}
