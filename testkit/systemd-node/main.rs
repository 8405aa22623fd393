//! `criox-systemd-node`: criox with the systemd cgroup driver under the test kit's private
//! systemd ([`criox_testkit::systemd`]), to see the driver at work on a machine whose own
//! init is not systemd. It boots systemd as PID 1 of private namespaces, starts criox in
//! them (`cgroup_manager = "systemd"`, `runc` as a second handler), pulls the fixture
//! busybox image, and runs a shell inside the namespaces: the script given as the argument,
//! or an interactive one. The shell finds `CONTAINER_RUNTIME_ENDPOINT`, `CRIOX_IMAGE` (the
//! busybox reference) and `CRIOX_NODE` (the daemon's directory, with `daemon.log`) in its
//! environment and `criox` on its PATH; `systemctl` and `systemd-cgls` talk to the private
//! systemd. Everything goes when the shell ends. `hack/systemd-node` builds and runs it.

use std::process::{ExitCode, Stdio};

use criox_proto::v1::{ImageSpec, PullImageRequest};
use criox_testkit::systemd::{Systemd, SystemdDaemon};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let script = std::env::args_os().nth(1);
    if let Some(reason) = criox_testkit::systemd::unavailable() {
        eprintln!("criox-systemd-node: systemd cannot run here: {reason}");
        return ExitCode::FAILURE;
    }
    let systemd = Systemd::boot();
    let daemon = SystemdDaemon::start(&systemd).await;
    let image = criox_testkit::busybox_image();
    if let Err(e) = daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
    {
        eprintln!("criox-systemd-node: pull {image}: {e}\n{}", daemon.log());
        return ExitCode::FAILURE;
    }
    let bin_dir = criox_testkit::criox_bin()
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut shell = systemd.command("sh");
    if let Some(script) = &script {
        shell.arg(script);
    }
    let status = shell
        .env(
            "CONTAINER_RUNTIME_ENDPOINT",
            format!("unix://{}", daemon.socket.display()),
        )
        .env("CRIOX_IMAGE", &image)
        .env("CRIOX_NODE", daemon.dir.path())
        .env("PATH", format!("{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"))
        .stdin(if script.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .status();
    drop(daemon);
    drop(systemd);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("criox-systemd-node: the shell ended with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("criox-systemd-node: cannot run the shell: {e}");
            ExitCode::FAILURE
        }
    }
}
