//! Exec'd processes that their caller gave up on are killed and reaped before the call
//! ends: an ExecSync past its timeout (the kubelet's exec probes with timeoutSeconds), a
//! streaming exec whose client went away. Nothing is left running and no zombie is handed
//! to the host's init. Also a terminal exec with stdin, on both runtimes. Every test runs
//! on the embedded runtime and on Debian's runc as a handler. Run as root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{host_network_pod, run_pod_on};
use criox_testkit::{Daemon, exec_url};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const EMBEDDED: &str = "";
const RUNC: &str = "runc";

/// A daemon with busybox pulled and runc as the `runc` handler, and a running container
/// `sleep 3600` on `handler`; returns the container id too.
async fn running_container(handler: &str) -> (Daemon, String) {
    let daemon = criox_testkit::daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let pod = host_network_pod("execkill", &daemon.dir.join("logs"));
    let pod_id = run_pod_on(&mut rt, pod.clone(), handler).await;
    let config = criox_testkit::busybox_container("sleeper", &["sleep", "3600"]);
    let id = criox_testkit::run_container(&mut rt, &pod_id, &pod, config).await;
    (daemon, id)
}

/// Host pids whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

/// Waits up to ten seconds for exactly one process running `argv` and returns its pid.
async fn wait_for_process(argv: &[&str]) -> i32 {
    for _ in 0..500 {
        if let [pid] = pids_running(argv)[..] {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no process {argv:?} appeared: {:?}", pids_running(argv));
}

/// True when `pid` is gone for good: not running, and not a zombie waiting to be reaped.
fn reaped(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent pid of `pid` while it exists; None also while the kernel releases a reaped
/// process, when /proc shows its parent as 0.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid: i32 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
    (ppid != 0).then_some(ppid)
}

/// The state letter of `pid` from /proc/PID/stat (Z for a zombie), for failure messages.
fn state_of(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let (_, rest) = stat.rsplit_once(") ").unwrap_or(("", "gone"));
    let ppid = rest.split(' ').nth(1).unwrap_or("?");
    format!("{} (parent {ppid})", rest.split(' ').next().unwrap_or("?"))
}

async fn assert_still_running(rt: &mut Rt, id: &str) {
    let status = criox_testkit::container_status(rt, id).await;
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "the container itself must keep running"
    );
    let out = criox_testkit::exec_sync(rt, id, &["echo", "alive"], 10).await;
    assert_eq!(
        (out.exit_code, String::from_utf8_lossy(&out.stdout).as_ref()),
        (0, "alive\n")
    );
}

async fn exec_sync_timeout_kills_and_reaps(handler: &str, seconds: &str) {
    let (daemon, id) = running_container(handler).await;
    let mut rt = daemon.runtime().await;
    let argv = ["sleep", seconds];
    let started = Instant::now();
    let call = {
        let mut rt = rt.clone();
        let id = id.clone();
        let cmd: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        tokio::spawn(async move {
            rt.exec_sync(ExecSyncRequest {
                container_id: id,
                cmd,
                timeout: 1,
            })
            .await
        })
    };
    let pid = wait_for_process(&argv).await;
    let result = call.await.unwrap();
    let took = started.elapsed();
    eprintln!("ExecSync with a timeout of 1s on {handler:?} answered after {took:?}");
    let err = result.expect_err("ExecSync past its timeout must fail");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    assert!(
        took < Duration::from_secs(6),
        "ExecSync took {took:?} with a timeout of 1s"
    );
    // Right after the answer: the process is neither running nor a zombie.
    assert!(
        reaped(pid),
        "{argv:?} (pid {pid}) is still there after ExecSync returned: state {}",
        state_of(pid)
    );
    assert!(pids_running(&argv).is_empty());
    assert_still_running(&mut rt, &id).await;
}

criox_testkit::on_both_runtimes!(
    exec_sync_timeout_kills_and_reaps_the_process =>
        exec_sync_timeout_kills_and_reaps(EMBEDDED, "301"; RUNC, "302")
);

/// A streaming client, killed (as a client that crashes or loses its connection) on drop.
struct Client(std::process::Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn abandoned_streaming_exec_is_killed_and_reaped(handler: &str, seconds: &[&str; 3]) {
    let (daemon, id) = running_container(handler).await;
    let mut rt = daemon.runtime().await;
    let sessions = [("spdy", false), ("ws", false), ("spdy", true)];
    for ((proto, tty), seconds) in sessions.into_iter().zip(seconds) {
        let what = format!("{proto}, tty {tty}");
        let argv = ["sleep", seconds];
        let url = exec_url(&mut rt, &id, &argv, true, tty).await;
        let mut args = vec!["exec", "-proto", proto, "-url", &url, "-stdin", "-stdout"];
        if tty {
            args.push("-tty");
        } else {
            args.push("-stderr");
        }
        let client = Client(
            Command::new(criox_testkit::streaming::streamclient())
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start streamclient"),
        );
        let pid = wait_for_process(&argv).await;
        // The runtime's intermediate processes leave around the exec itself.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let parent = parent_of(pid).expect("parent of the exec'd process");
        drop(client);
        // Reaped by the exec command that started it: never handed to another parent
        // (the host's init) on the way out.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut parents = vec![parent];
        while !reaped(pid) && Instant::now() < deadline {
            if let Some(p) = parent_of(pid)
                && !parents.contains(&p)
            {
                parents.push(p);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            reaped(pid),
            "{what}: {argv:?} (pid {pid}) outlived its client by 5s: state {}",
            state_of(pid)
        );
        assert_eq!(
            parents,
            [parent],
            "{what}: {argv:?} (pid {pid}) changed parents before it was reaped"
        );
    }
    assert_still_running(&mut rt, &id).await;
}

criox_testkit::on_both_runtimes!(
    abandoned_streaming_exec_is_killed_and_reaped =>
        abandoned_streaming_exec_is_killed_and_reaped(EMBEDDED, &["311", "312", "313"]; RUNC, &["321", "322", "323"])
);

async fn terminal_exec_with_stdin(handler: &str) {
    let (daemon, id) = running_container(handler).await;
    let mut rt = daemon.runtime().await;
    for proto in ["spdy", "ws"] {
        let url = exec_url(&mut rt, &id, &["sh"], true, true).await;
        let out = criox_testkit::streaming::client(
            &[
                "exec", "-proto", proto, "-url", &url, "-stdin", "-stdout", "-tty", "-resize",
                "90x20",
            ],
            b"echo typed-$((6*7)); stty size; tty; exit 7\n",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{proto}: {stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
        assert!(stdout.contains("typed-42"), "{proto}: {stdout:?}");
        assert!(stdout.contains("20 90"), "{proto}: {stdout:?}");
        assert!(stdout.contains("/dev/pts/"), "{proto}: {stdout:?}");
    }
    // A process the runtime cannot start: its error comes back at once, not after the
    // wait for a terminal that never comes.
    let url = exec_url(&mut rt, &id, &["/no-such-binary"], true, true).await;
    let started = Instant::now();
    let out =
        criox_testkit::streaming::client(&["exec", "-url", &url, "-stdin", "-stdout", "-tty"], b"");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("a missing program on {handler:?}, after {took:?}: {stderr}");
    let said = format!(
        "{:?} after {took:?}: {stderr}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        daemon.log()
    );
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(stderr.contains("no-such-binary"), "{said}");
    assert!(
        took < Duration::from_secs(5),
        "the error took {took:?}: {stderr}"
    );
}

criox_testkit::on_both_runtimes!(
    terminal_exec_with_stdin =>
        terminal_exec_with_stdin(EMBEDDED; RUNC)
);

/// Whether `pid` still runs: gone or a zombie both mean it does not.
fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// A shell's background child is in the exec's process group: it goes with the exec.
async fn exec_sync_timeout_kills_the_whole_exec(handler: &str, background: &str, foreground: &str) {
    let (daemon, id) = running_container(handler).await;
    let mut rt = daemon.runtime().await;
    let script = format!("sleep {background} & sleep {foreground}");
    let call = {
        let mut rt = rt.clone();
        let id = id.clone();
        tokio::spawn(async move {
            rt.exec_sync(ExecSyncRequest {
                container_id: id,
                cmd: vec!["sh".into(), "-c".into(), script],
                timeout: 1,
            })
            .await
        })
    };
    let pids = [
        wait_for_process(&["sleep", background]).await,
        wait_for_process(&["sleep", foreground]).await,
    ];
    let err = call
        .await
        .unwrap()
        .expect_err("ExecSync past its timeout must fail");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    for pid in pids {
        assert!(!running(pid), "pid {pid} still runs: {}", state_of(pid));
        // What the exec'd shell left is the container's own, not the host init's.
        assert_ne!(parent_of(pid), Some(1), "pid {pid}: {}", state_of(pid));
    }
    assert_still_running(&mut rt, &id).await;
}

criox_testkit::on_both_runtimes!(
    exec_sync_timeout_kills_what_the_exec_started =>
        exec_sync_timeout_kills_the_whole_exec(EMBEDDED, "351", "352"; RUNC, "353", "354")
);
