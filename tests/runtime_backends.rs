//! The backend suite: real busybox containers through the monitor, once with the embedded
//! runtime and once with Debian's runc. Run as root (through hack/test).

use std::io::{Read, Write};
use std::time::Duration;

use criox_runtime::oci_spec::runtime::ProcessBuilder;
use criox_runtime::{AttachInput, AttachOutput, OutputStream, ProcessId, Status};
use criox_testkit::dir_entries;
use criox_testkit::runtime::{Env, Kind, container_cgroups, without_pid_namespace};
use serde_json::json;

fn exit_code_is_recorded(kind: Kind) {
    let env = Env::new(kind, "exit");
    let id = env.id(1);
    env.run(&id, &["sh", "-c", "exit 7"], |_| {});
    let rec = env.wait_exit(&id);
    assert_eq!(
        (rec.exit_code, rec.signal, rec.oom_killed),
        (7, None, false)
    );
    assert!(chrono_like(&rec.finished_at), "{}", rec.finished_at);
}

fn chrono_like(ts: &str) -> bool {
    ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T'
}

fn exit_by_sigterm_reports_the_signal(kind: Kind) {
    let env = Env::new(kind, "sigterm");
    let id = env.id(1);
    env.run(&id, &["sleep", "1000"], without_pid_namespace);
    env.rt.kill(&id, libc::SIGTERM, false).unwrap();
    let rec = env.wait_exit(&id);
    assert_eq!((rec.exit_code, rec.signal), (128 + 15, Some(15)));
}

fn stdout_and_stderr_in_cri_format(kind: Kind) {
    let env = Env::new(kind, "crilog");
    let id = env.id(1);
    env.run(
        &id,
        &["sh", "-c", "echo out; echo err >&2; printf partial"],
        |_| {},
    );
    env.wait_exit(&id);
    let log = env.log(&id);
    let lines: Vec<&str> = log.lines().collect();
    let rest = |l: &str| {
        l.split_once(' ')
            .map(|(ts, r)| (ts.to_string(), r.to_string()))
    };
    let mut records: Vec<String> = Vec::new();
    for l in &lines {
        let (ts, r) = rest(l).unwrap();
        assert!(chrono_like(&ts), "timestamp of {l:?}");
        records.push(r);
    }
    assert!(records.contains(&"stdout F out".to_string()), "{log}");
    assert!(records.contains(&"stderr F err".to_string()), "{log}");
    assert!(records.contains(&"stdout P partial".to_string()), "{log}");
}

fn long_lines_are_split(kind: Kind) {
    let env = Env::new(kind, "longline");
    let id = env.id(1);
    env.run(
        &id,
        &["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x; echo"],
        |_| {},
    );
    env.wait_exit(&id);
    let log = env.log(&id);
    let text: String = log
        .lines()
        .map(|l| l.splitn(4, ' ').collect::<Vec<_>>())
        .inspect(|f| assert_eq!(f[1], "stdout"))
        .map(|f| f[3].to_string())
        .collect();
    assert_eq!(text, "x".repeat(20000), "content survives the split");
    let tags: Vec<&str> = log.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(tags.last(), Some(&"F"));
    assert!(tags[..tags.len() - 1].iter().all(|t| *t == "P"), "{tags:?}");
    assert!(log.lines().all(|l| l.len() <= 16 * 1024 + 64));
}

/// Sends `data` to the container's stdin through an attach session.
fn send_stdin(stream: &mut std::os::unix::net::UnixStream, data: &[u8]) {
    stream
        .write_all(&AttachInput::Stdin(data).encode())
        .unwrap();
}

fn log_reopen_after_rotation(kind: Kind) {
    let env = Env::new(kind, "reopen");
    let id = env.id(1);
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "read a; echo $a; read b; echo $b"],
        |_| {},
    );
    let mut req = env.request(&id, &bundle);
    req.stdin = true;
    env.launch(&req).unwrap();
    env.rt.start(&id).unwrap();
    let state_dir = env.state_dir(&id);
    let mut session = criox_runtime::attach(&id, &state_dir, true).unwrap();
    send_stdin(&mut session, b"one\n");
    env.wait_log(&id, "stdout F one");
    let rotated = env.path("rotated.log");
    std::fs::rename(env.log_path(&id), &rotated).unwrap();
    criox_runtime::reopen_log(&id, &state_dir).unwrap();
    send_stdin(&mut session, b"two\n");
    let rec = env.wait_exit(&id);
    assert_eq!(rec.exit_code, 0);
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = env.log(&id);
    assert!(
        old.contains("stdout F one") && !old.contains("two"),
        "{old}"
    );
    assert!(
        new.contains("stdout F two") && !new.contains("one"),
        "{new}"
    );
}

fn attach_receives_output(kind: Kind) {
    let env = Env::new(kind, "attach");
    let id = env.id(1);
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "read a; echo got-$a; echo e-$a >&2"],
        |_| {},
    );
    let mut req = env.request(&id, &bundle);
    req.stdin = true;
    req.stdin_once = true;
    env.launch(&req).unwrap();
    let mut session = criox_runtime::attach(&id, &env.state_dir(&id), true).unwrap();
    env.rt.start(&id).unwrap();
    send_stdin(&mut session, b"x\n");
    session
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The monitor closes the session when the container has exited.
    let mut wire = Vec::new();
    let _ = session.read_to_end(&mut wire);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (stream, data) in AttachOutput::default().push(&wire) {
        match stream {
            OutputStream::Stdout => out.extend(data),
            OutputStream::Stderr => err.extend(data),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "got-x\n");
    assert_eq!(String::from_utf8_lossy(&err), "e-x\n");
    assert_eq!(env.wait_exit(&id).exit_code, 0);
}

fn terminal_output(kind: Kind) {
    let env = Env::new(kind, "tty");
    let id = env.id(1);
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; stty size",
        ],
        |v| v["process"]["terminal"] = json!(true),
    );
    let mut req = env.request(&id, &bundle);
    req.terminal = true;
    env.launch(&req).unwrap();
    criox_runtime::resize(&id, &env.state_dir(&id), 33, 99).unwrap();
    env.rt.start(&id).unwrap();
    assert_eq!(env.wait_exit(&id).exit_code, 0);
    let log = env.log(&id);
    assert!(log.contains("stdout F is-a-tty\r"), "{log}");
    assert!(log.contains("stdout F 33 99\r"), "{log}");
    assert!(!log.contains("stderr"), "a terminal has one stream: {log}");
}

fn exec_into_a_running_container(kind: Kind) {
    let env = Env::new(kind, "exec");
    let id = env.id(1);
    env.run(&id, &["sleep", "1000"], |_| {});
    let process = ProcessBuilder::default()
        .args(vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo out-$FOO; echo err >&2; hostname; exit 5".to_string(),
        ])
        .env(vec![
            "FOO=bar".to_string(),
            "PATH=/bin:/usr/bin".to_string(),
        ])
        .cwd("/")
        .build()
        .unwrap();
    let out = env
        .rt
        .exec_sync(&id, &process, Some(Duration::from_secs(30)), 1 << 20)
        .unwrap();
    assert_eq!(out.exit_code, 5, "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out-bar\ncriox-test\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert!(!out.timed_out && !out.truncated);

    // Output beyond the limit is cut, and the timeout kills the process.
    let chatty = ProcessBuilder::default()
        .args(vec![
            "sh".to_string(),
            "-c".to_string(),
            "head -c 5000 /dev/zero; sleep 1000".to_string(),
        ])
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .unwrap();
    let out = env
        .rt
        .exec_sync(&id, &chatty, Some(Duration::from_millis(1500)), 1000)
        .unwrap();
    assert!(out.timed_out && out.truncated, "{out:?}");
    assert_eq!(out.stdout.len(), 1000);
    assert_eq!(env.rt.state(&id).unwrap().status, Status::Running);
}

fn kill_a_process_that_ignores_sigterm(kind: Kind) {
    let env = Env::new(kind, "ignterm");
    let id = env.id(1);
    env.run(
        &id,
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
        ],
        without_pid_namespace,
    );
    env.wait_log(&id, "stdout F ready");
    env.rt.kill(&id, libc::SIGTERM, false).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(env.rt.exit_record(&env.state_dir(&id)).is_none());
    assert_eq!(env.rt.state(&id).unwrap().status, Status::Running);
    env.rt.kill(&id, libc::SIGKILL, true).unwrap();
    let rec = env.wait_exit(&id);
    assert_eq!((rec.exit_code, rec.signal), (137, Some(9)));
    assert_eq!(env.rt.state(&id).unwrap().status, Status::Stopped);
}

fn memory_limit_oom_is_reported(kind: Kind) {
    let env = Env::new(kind, "oom");
    let id = env.id(1);
    env.run(
        &id,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
        |v| v["linux"]["resources"]["memory"] = json!({"limit": 32 * 1024 * 1024}),
    );
    let rec = env.wait_exit(&id);
    assert!(rec.oom_killed, "{rec:?}");
    assert_eq!(rec.signal, Some(9));
}

fn delete_removes_cgroup_and_state(kind: Kind) {
    let env = Env::new(kind, "delete");
    let id = env.id(1);
    let launched = env.run(&id, &["sleep", "1000"], |_| {});
    assert!(launched.pid > 0 && launched.monitor_pid > 0);
    let state_dir = env.state_dir(&id);
    assert!(
        !container_cgroups(&id).is_empty(),
        "the container has cgroups"
    );
    // The monitor confines itself with a seccomp filter once the container exists.
    let seccomp_mode = || {
        std::fs::read_to_string(format!("/proc/{}/status", launched.monitor_pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
    };
    for _ in 0..500 {
        if seccomp_mode().as_deref() == Some("2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        seccomp_mode().as_deref(),
        Some("2"),
        "monitor runs under a filter"
    );
    assert_eq!(env.rt.state(&id).unwrap().pid, launched.pid);
    env.delete(&id);
    assert_eq!(container_cgroups(&id), Vec::<std::path::PathBuf>::new());
    assert_eq!(dir_entries(&state_dir), Vec::<String>::new());
    assert!(ProcessId::of(launched.monitor_pid).is_none());
    assert!(matches!(
        env.rt.state(&id),
        Err(criox_runtime::RuntimeError::NotFound { .. })
    ));
    assert_eq!(
        dir_entries(env.rt.root())
            .into_iter()
            .filter(|n| n.contains(&id))
            .count(),
        0
    );
}

/// The embedded runtime starts and deletes a container without hooks from the calling
/// process (threaded here, as the daemon is); one with hooks goes through a process of
/// its own, which runs them, in order.
fn poststart_and_poststop_hooks_run(kind: Kind) {
    let env = Env::new(kind, "hooks");
    let id = env.id(1);
    let log = env.path("hooks.log");
    let hook = |name: &str| {
        json!({"path": "/bin/sh",
               "args": ["sh", "-c", format!("cat >/dev/null; echo {name} >> {}", log.display())]})
    };
    let launched = env.run(&id, &["sleep", "1000"], |v| {
        v["hooks"] = json!({"poststart": [hook("poststart")], "poststop": [hook("poststop")]});
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "poststart\n",
        "poststart ran once the container was started"
    );
    assert!(ProcessId::of(launched.pid).is_some(), "the container runs");
    env.delete(&id);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "poststart\npoststop\n"
    );
    assert_eq!(container_cgroups(&id), Vec::<std::path::PathBuf>::new());
    assert!(matches!(
        env.rt.state(&id),
        Err(criox_runtime::RuntimeError::NotFound { .. })
    ));
}

fn pause_resume_and_update(kind: Kind) {
    let env = Env::new(kind, "pause");
    let id = env.id(1);
    env.run(&id, &["sleep", "1000"], |_| {});
    env.rt.pause(&id).unwrap();
    assert_eq!(env.rt.state(&id).unwrap().status, Status::Paused);
    env.rt.resume(&id).unwrap();
    assert_eq!(env.rt.state(&id).unwrap().status, Status::Running);
    let res: criox_runtime::oci_spec::runtime::LinuxResources =
        serde_json::from_value(json!({"pids": {"limit": 77}})).unwrap();
    env.rt.update(&id, &res).unwrap();
    let limit = container_cgroups(&id)
        .into_iter()
        .find_map(|d| std::fs::read_to_string(d.join("pids.max")).ok());
    assert_eq!(limit.as_deref().map(str::trim), Some("77"));
}

/// SCMP_CMP_MASKED_EQ means `arg & value == valueTwo` (value is the mask), as runc has it.
fn seccomp_masked_eq_takes_value_as_the_mask(kind: Kind) {
    let env = Env::new(kind, "maskedeq");
    let id = env.id(1);
    env.run(
        &id,
        &[
            "sh",
            "-c",
            "kill -CONT $$ && echo sent-18; kill -0 $$ && echo sent-0; true",
        ],
        |v| {
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{
                    "names": ["kill"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 1, "value": 3, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]
                }]
            });
        },
    );
    assert_eq!(env.wait_exit(&id).exit_code, 0);
    let log = env.log(&id);
    assert!(log.contains("stdout F sent-0"), "{log}");
    assert!(
        !log.contains("sent-18"),
        "18 & 3 == 2 must be refused: {log}"
    );
}

/// The shape CRI specs have (seccomp, and noNewPrivileges present but false): the
/// container and processes exec'd into it run, and state reports the caller's bundle.
fn exec_with_seccomp_and_no_new_privileges_false(kind: Kind) {
    let env = Env::new(kind, "nnpfalse");
    let id = env.id(1);
    let bundle = env.bundle(&id, &["sleep", "1000"], |v| {
        v["process"]["noNewPrivileges"] = json!(false);
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    env.launch(&env.request(&id, &bundle)).unwrap();
    env.rt.start(&id).unwrap();
    let state = env.rt.state(&id).unwrap();
    assert_eq!(state.bundle, bundle);
    assert_eq!(state.rootfs, bundle.join("rootfs"));
    let mut process: criox_runtime::oci_spec::runtime::Process = serde_json::from_value(json!({
        "args": ["sh", "-c", "echo ok"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"], "noNewPrivileges": false
    }))
    .unwrap();
    process.set_terminal(Some(false));
    let out = env
        .rt
        .exec_sync(&id, &process, Some(Duration::from_secs(30)), 4096)
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice()),
        (0, &b"ok\n"[..]),
        "{out:?}"
    );
}

/// The monitor outlives the process that launched it: a child test process launches a
/// container and exits; the exit is still recorded.
fn monitor_survives_the_launcher(kind: Kind) {
    let env = Env::new(kind, "survive");
    let id = env.id(1);
    let bundle = env.bundle(&id, &["sh", "-c", "read x; exit 42"], |_| {});
    let mut req = env.request(&id, &bundle);
    req.stdin = true;
    let args = json!({
        "kind": if kind == Kind::Embedded { "embedded" } else { "runc" },
        "root": env.rt.root(),
        "id": id,
        "bundle": bundle,
        "state_dir": req.state_dir,
        "log": req.log_path,
    });
    env.launched
        .borrow_mut()
        .push((id.clone(), req.state_dir.clone()));
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "launcher_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CRIOX_TEST_LAUNCH", args.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    // The launcher is gone; the monitor is not.
    let monitor = criox_runtime::monitor_pid(&req.state_dir).expect("monitor alive");
    assert!(env.rt.exit_record(&req.state_dir).is_none());
    let mut session = criox_runtime::attach(&id, &req.state_dir, true).unwrap();
    session
        .write_all(&AttachInput::Stdin(b"go\n").encode())
        .unwrap();
    let rec = env.wait_exit(&id);
    assert_eq!(rec.exit_code, 42);
    let mut rest = Vec::new();
    let _ = session.read_to_end(&mut rest);
    for _ in 0..500 {
        if ProcessId::of(monitor).is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ProcessId::of(monitor).is_none());
}

/// The session id of `pid`, from /proc/<pid>/stat.
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(3)?.parse().ok()
}

fn wait_for_no_process_naming(path: &std::path::Path) -> Vec<i32> {
    for _ in 0..500 {
        if criox_testkit::processes_naming(path).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    criox_testkit::processes_naming(path)
}

/// The daemon starts a monitor before the bundle exists and lets it create once the bundle
/// is ready; a launch given up before that leaves nothing.
fn monitor_started_before_its_bundle(kind: Kind) {
    let env = Env::new(kind, "pending");
    let id = env.id(1);
    let bundle = env.path(&format!("bundle-{id}"));
    let req = env.request(&id, &bundle);
    env.launched
        .borrow_mut()
        .push((req.id.clone(), req.state_dir.clone()));
    let pending = env.rt.prepare_launch(&req).unwrap();
    assert!(!bundle.exists());
    assert_eq!(env.bundle(&id, &["sh", "-c", "exit 3"], |_| {}), bundle);
    pending.create().unwrap();
    env.rt.start(&id).unwrap();
    assert_eq!(env.wait_exit(&id).exit_code, 3);

    let gone = env.id(2);
    let req = env.request(&gone, &env.path(&format!("bundle-{gone}")));
    let pending = env.rt.prepare_launch(&req).unwrap();
    // The detached monitor (a session of its own, unlike the process that started it and
    // leaves at once) is up and waiting.
    let detached = || {
        criox_testkit::processes_naming(&req.state_dir)
            .into_iter()
            .filter(|pid| session_of(*pid) == Some(*pid))
            .collect::<Vec<_>>()
    };
    for _ in 0..500 {
        if !detached().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(detached().len(), 1);
    drop(pending);
    assert_eq!(
        wait_for_no_process_naming(&req.state_dir),
        Vec::<i32>::new()
    );
    assert!(!req.state_dir.exists());
    assert!(!env.log_path(&gone).exists());
    assert!(
        !dir_entries(env.rt.root()).contains(&gone),
        "{:?}",
        dir_entries(env.rt.root())
    );
    assert!(
        container_cgroups(&gone).is_empty(),
        "{:?}",
        container_cgroups(&gone)
    );
}

/// Not a test of its own: the launching process of `monitor_survives_the_launcher`, which
/// runs it by name; ignored so that a plain test run neither runs nor counts it.
#[test]
#[ignore = "the launching process of monitor_survives_the_launcher"]
fn launcher_helper() {
    let args = std::env::var("CRIOX_TEST_LAUNCH")
        .expect("CRIOX_TEST_LAUNCH: run only by monitor_survives_the_launcher");
    let v: serde_json::Value = serde_json::from_str(&args).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    let rt = if s("kind") == "embedded" {
        criox_runtime::Runtime::embedded(s("root"))
    } else {
        criox_runtime::Runtime::external(criox_testkit::runtime::RUNC, s("root"))
    }
    .with_exe(criox_testkit::criox_bin());
    let req = criox_runtime::LaunchRequest {
        id: s("id"),
        bundle: s("bundle").into(),
        state_dir: s("state_dir").into(),
        log_path: Some(s("log").into()),
        stdin: true,
        stdin_once: false,
        terminal: false,
    };
    rt.launch(&req).unwrap();
    rt.start(&req.id).unwrap();
}

criox_testkit::on_both_backends!(
    exit_code_is_recorded,
    exit_by_sigterm_reports_the_signal,
    stdout_and_stderr_in_cri_format,
    long_lines_are_split,
    log_reopen_after_rotation,
    attach_receives_output,
    terminal_output,
    exec_into_a_running_container,
    kill_a_process_that_ignores_sigterm,
    memory_limit_oom_is_reported,
    delete_removes_cgroup_and_state,
    poststart_and_poststop_hooks_run,
    pause_resume_and_update,
    monitor_survives_the_launcher,
    seccomp_masked_eq_takes_value_as_the_mask,
    exec_with_seccomp_and_no_new_privileges_false,
    monitor_started_before_its_bundle,
);
