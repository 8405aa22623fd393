//! A container's monitor holds nothing once the container exists: no capabilities,
//! no_new_privs, and a seccomp filter. The container's whole life still works through it:
//! logs, attach with stdin, a terminal's resize, exec beside it, log reopen after a
//! rotation, stop and the exit record. Run as root.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{host_network_pod, run_pod_on};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

fn assert_confined(pid: i32, what: &str) {
    for (field, want) in [
        ("Seccomp:", "2"),
        ("NoNewPrivs:", "1"),
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("CapInh:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
    ] {
        assert_eq!(
            criox_testkit::proc_status_field(pid, field),
            want,
            "{what}: monitor {field}"
        );
    }
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(needle)
}

async fn wait_log(log: &Path, needle: &str) {
    // Generous: on a loaded two-core machine a busybox loop can stall for seconds.
    for _ in 0..1200 {
        if log_has(log, needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{} never showed {needle:?}: {:?}",
        log.display(),
        std::fs::read_to_string(log)
    );
}

async fn attach(rt: &mut Rt, id: &str, tty: bool) -> Child {
    let url = rt
        .attach(AttachRequest {
            container_id: id.to_string(),
            stdin: true,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let mut args = vec!["attach", "-url", &url, "-stdin", "-stdout"];
    if tty {
        args.extend(["-tty", "-resize", "91x27"]);
    } else {
        args.push("-stderr");
    }
    Command::new(criox_testkit::streaming::streamclient())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the attach client")
}

async fn container(rt: &mut Rt, pod: &str, config: &PodSandboxConfig, tty: bool) -> String {
    let name = if tty { "term" } else { "plain" };
    // Echoes its input; with a terminal it also says the terminal's size.
    let script = if tty {
        "while read line; do echo got:$line size:$(stty size); done"
    } else {
        "while read line; do echo got:$line; echo err:$line >&2; done"
    };
    let mut c = criox_testkit::busybox_container(name, &["sh", "-c", script]);
    c.stdin = true;
    c.tty = tty;
    let id = criox_testkit::create_container(rt, pod, config, c).await;
    criox_testkit::start_container(rt, &id).await;
    id
}

async fn whole_life(handler: &str) {
    let daemon = criox_testkit::daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let logs = daemon.dir.join("logs");
    let config = host_network_pod("confined", &logs);
    let pod = run_pod_on(&mut rt, config.clone(), handler).await;

    for tty in [false, true] {
        let what = format!("handler {handler:?}, tty {tty}");
        let id = container(&mut rt, &pod, &config, tty).await;
        let monitor = criox_testkit::monitor_pid(&daemon.state, &id);
        assert_confined(monitor, &what);
        let log = logs.join(if tty { "term.log" } else { "plain.log" });

        // Attach: input in, output out, both streams to the log; a terminal's size set.
        let mut attached = attach(&mut rt, &id, tty).await;
        let mut input = attached.stdin.take().unwrap();
        input.write_all(b"ping\n").unwrap();
        wait_log(&log, "got:ping").await;
        if tty {
            // The size travels on its own stream, so a line can reach the container before
            // the resize does (busybox's `stty size` then fails on a 0x0 terminal): ask
            // again until the size shows.
            let mut seen = false;
            for _ in 0..30 {
                if log_has(&log, "size:27 91") {
                    seen = true;
                    break;
                }
                input.write_all(b"ping\n").unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert!(
                seen,
                "{what}: the terminal never took the attach client's size"
            );
        } else {
            wait_log(&log, "stderr F err:ping").await;
        }

        // Exec beside the container's process.
        let out = criox_testkit::exec_sync(&mut rt, &id, &["echo", "from-exec"], 10).await;
        assert_eq!(
            (out.exit_code, String::from_utf8_lossy(&out.stdout).trim()),
            (0, "from-exec"),
            "{what}"
        );

        // Rotation: the monitor opens a new file at the old path when asked.
        let rotated = log.with_extension("log.1");
        std::fs::rename(&log, &rotated).unwrap();
        rt.reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ReopenContainerLog");
        input.write_all(b"pong\n").unwrap();
        wait_log(&log, "got:pong").await;
        assert!(
            !std::fs::read_to_string(&rotated)
                .unwrap()
                .contains("got:pong"),
            "{what}: output after the reopen went to the rotated file"
        );
        assert_confined(monitor, &what);

        // Stop: the process ends, the monitor records the exit and leaves.
        criox_testkit::stop_container(&mut rt, &id, 1).await;
        let status = criox_testkit::container_status(&mut rt, &id).await;
        assert_eq!(status.state(), ContainerState::ContainerExited, "{what}");
        assert!(status.finished_at > 0, "{what}: {status:?}");
        drop(input);
        let _ = criox_testkit::streaming::wait_output(attached, Duration::from_secs(20));
        for _ in 0..200 {
            if !Path::new(&format!("/proc/{monitor}")).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            !Path::new(&format!("/proc/{monitor}")).exists(),
            "{what}: the monitor is still there after the stop"
        );
    }
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

criox_testkit::on_both_runtimes!(
    a_confined_monitor_serves_a_whole_container_life =>
        whole_life(""; "runc")
);
