//! The daemon's Exec, Attach and PortForward RPCs and the streaming server it starts.

use std::process::{Command, Stdio};
use std::time::Duration;

use criox_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use criox_testkit::Daemon;
use criox_testkit::streaming::collect;
use tonic::Code;

/// The streaming server's base URL, from the daemon's start-up log.
fn streaming_base(daemon: &Daemon) -> String {
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("streaming server listening on"))
        .unwrap_or_else(|| panic!("no streaming server in the log:\n{log}"));
    let url = line.rsplit(' ').next().unwrap();
    url.trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_string()
}

#[tokio::test]
async fn streaming_rpcs_validate_and_refuse_unknown_ids() {
    let daemon = Daemon::start().await;
    let mut rt = daemon.runtime().await;

    let err = rt
        .exec(ExecRequest {
            container_id: "nosuch".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message().contains("container nosuch not found"),
        "{err}"
    );

    let err = rt
        .exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("stdin, stdout, or stderr"), "{err}");

    let err = rt
        .attach(AttachRequest {
            container_id: "c".into(),
            stdout: true,
            stderr: true,
            tty: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("tty and stderr"), "{err}");

    let err = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "nopod".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "nopod".into(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn daemon_serves_the_streaming_endpoint_on_the_configured_address() {
    let daemon = Daemon::builder()
        .config("[streaming]\naddress = \"127.0.0.1\"\nport = 0\n")
        .start()
        .await;
    let base = streaming_base(&daemon);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let host_port = base.trim_start_matches("http://").to_string();
    let reply = tokio::task::spawn_blocking(move || {
        criox_testkit::streaming::raw_http(
            &host_port,
            "POST /exec/0000 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

#[tokio::test]
async fn port_forward_reaches_httpd_inside_a_pod() {
    let daemon = Daemon::start().await;
    let net = criox_testkit::pods::TestNetwork::new(&daemon.dir);
    net.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let pod = criox_testkit::pods::run_pod(
        &mut rt,
        criox_testkit::pods::pod_config("web", &criox_testkit::unique("pf")),
    )
    .await;
    let (_, info) = criox_testkit::pods::status(&mut rt, &pod).await;
    let netns = info["namespaces"]["network"].as_str().unwrap().to_string();

    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "served in the pod\n").unwrap();
    let busybox = criox_testkit::busybox_binary();
    let httpd = criox_testkit::streaming::KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .arg(&busybox)
            .args(["httpd", "-f", "-p", "127.0.0.1:8080", "-h"])
            .arg(www.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..400 {
        let probe = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["ss", "-Hltn", "sport = :8080"])
            .output()
            .unwrap();
        if !probe.stdout.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    for proto in ["spdy", "ws"] {
        let url = rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![8080],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let out = tokio::task::spawn_blocking(move || {
            criox_testkit::streaming::client(
                &[
                    "portforward",
                    "-proto",
                    proto,
                    "-url",
                    &url,
                    "-port",
                    "8080",
                ],
                b"GET /index.html HTTP/1.0\r\n\r\n",
            )
        })
        .await
        .unwrap();
        let response = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{proto}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            response.ends_with("served in the pod\n"),
            "{proto}: {response:?}"
        );
    }

    // criox ctl port-forward asks for a URL per local connection.
    let mut forward = criox_testkit::streaming::KillOnDrop(
        Command::new(criox_testkit::criox_bin())
            .args(["ctl", "--endpoint"])
            .arg(&daemon.socket)
            .args(["port-forward", &pod, "0:8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = forward.0.stdout.take().unwrap();
    let responses = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Read, Write};
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let local = line
            .strip_prefix("Forwarding from ")
            .and_then(|l| l.split(" -> ").next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        (0..2)
            .map(|_| {
                let mut conn = std::net::TcpStream::connect(&local).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
                let mut response = String::new();
                conn.read_to_string(&mut response).unwrap();
                response
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for response in responses {
        assert!(response.ends_with("served in the pod\n"), "{response:?}");
    }
    drop(forward);
    drop(httpd);

    // A stopped pod no longer gets URLs.
    rt.stop_pod_sandbox(criox_proto::v1::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let err = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    rt.remove_pod_sandbox(criox_proto::v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
}

type Rt = criox_proto::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// Stops and removes a pod through `criox ctl` when dropped, so a failing test leaves no
/// containers behind; declared after the daemon, it runs while the daemon still does.
struct PodGuard {
    socket: std::path::PathBuf,
    pod: String,
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        for verb in ["stopp", "rmp"] {
            let _ = Command::new(criox_testkit::criox_bin())
                .args(["ctl", "--endpoint"])
                .arg(&self.socket)
                .args([verb, &self.pod])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A host-network pod for containers that only need to run something.
async fn host_pod(
    rt: &mut Rt,
    daemon: &Daemon,
) -> (String, criox_proto::v1::PodSandboxConfig, PodGuard) {
    let mut config = criox_testkit::pods::pod_config("attach", &criox_testkit::unique("uid"));
    config.log_directory = daemon.dir.join("logs").display().to_string();
    criox_testkit::pods::on_host_network(&mut config, criox_proto::v1::NamespaceMode::Container);
    let pod = criox_testkit::pods::run_pod(rt, config.clone()).await;
    let guard = PodGuard {
        socket: daemon.socket.clone(),
        pod: pod.clone(),
    };
    (pod, config, guard)
}

async fn run_container(
    rt: &mut Rt,
    pod: &str,
    pod_config: &criox_proto::v1::PodSandboxConfig,
    name: &str,
    command: &[&str],
    stdin: bool,
    stdin_once: bool,
) -> String {
    let config = criox_proto::v1::ContainerConfig {
        stdin,
        stdin_once,
        ..criox_testkit::busybox_container(name, command)
    };
    criox_testkit::run_container(rt, pod, pod_config, config).await
}

async fn attach_url(rt: &mut Rt, id: &str) -> String {
    rt.attach(AttachRequest {
        container_id: id.to_string(),
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    })
    .await
    .expect("Attach")
    .into_inner()
    .url
}

/// The Go client in an attach session whose stdin stays open until `close_stdin`; its
/// output is collected as it comes. Killed on drop (the way a user detaches).
struct Attached {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Attached {
    fn start(proto: &str, version: &str, url: &str) -> Attached {
        let mut child = Command::new(criox_testkit::streaming::streamclient())
            .args([
                "attach", "-proto", proto, "-version", version, "-url", url, "-stdin", "-stdout",
                "-stderr",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start streamclient");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Attached {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    fn send(&mut self, data: &[u8]) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    /// Ends the client's input: a FIN on the SPDY stdin stream, a close message on
    /// WebSocket v5, nothing the server sees on v4.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "stdout {:?}, stderr {:?}",
            self.output(),
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        )
    }

    async fn wait_for_output(&self, expected: &str, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.output().contains(expected) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {expected:?} never came back; {}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The client's exit status once it ends by itself.
    async fn wait_exit(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the attach session did not end; {}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every remote command version the server speaks, by transport.
const ATTACH_PROTOCOLS: &[(&str, &str)] = &[
    ("spdy", "v4.channel.k8s.io"),
    ("spdy", "v3.channel.k8s.io"),
    ("spdy", "v2.channel.k8s.io"),
    ("ws", "v5.channel.k8s.io"),
    ("ws", "v4.channel.k8s.io"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_stdin_reaches_the_container_over_every_protocol() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config, _guard) = host_pod(&mut rt, &daemon).await;
    let id = run_container(&mut rt, &pod, &pod_config, "cat", &["cat"], true, false).await;

    for (i, &(proto, version)) in ATTACH_PROTOCOLS.iter().enumerate() {
        let what = format!("{proto} {version}");
        let url = attach_url(&mut rt, &id).await;
        let mut attached = Attached::start(proto, version, &url);
        // Sent at once, before the server has the streams: it must wait in the stream.
        let first = format!("first {i} over {what}\n");
        attached.send(first.as_bytes());
        attached.wait_for_output(&first, &what).await;
        let second = format!("second {i} over {what}\n");
        attached.send(second.as_bytes());
        attached.wait_for_output(&second, &what).await;
        // Without stdin_once, a client ending its input leaves the container's stdin open.
        attached.close_stdin();
        drop(attached);
    }
    // The last session's input end and detach did not reach cat: one more line does.
    let url = attach_url(&mut rt, &id).await;
    let mut attached = Attached::start("spdy", "v4.channel.k8s.io", &url);
    attached.send(b"still open\n");
    attached
        .wait_for_output("still open\n", "after detaching")
        .await;
    drop(attached);
    let status = criox_testkit::container_status(&mut rt, &id).await;
    assert_eq!(
        status.state,
        criox_proto::v1::ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_once_closes_the_container_stdin_when_the_attached_client_is_done() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config, _guard) = host_pod(&mut rt, &daemon).await;

    // SPDY half-closes stdin and v5 sends a close message: the session then ends by
    // itself with the container. v4 over WebSocket cannot say so: the client leaves.
    for (i, &(proto, version)) in [
        ("spdy", "v4.channel.k8s.io"),
        ("spdy", "v2.channel.k8s.io"),
        ("ws", "v5.channel.k8s.io"),
        ("ws", "v4.channel.k8s.io"),
    ]
    .iter()
    .enumerate()
    {
        let what = format!("{proto} {version}");
        let id = run_container(
            &mut rt,
            &pod,
            &pod_config,
            &format!("once{i}"),
            &["cat"],
            true,
            true,
        )
        .await;
        let url = attach_url(&mut rt, &id).await;
        let mut attached = Attached::start(proto, version, &url);
        attached.send(b"only once\n");
        attached.wait_for_output("only once\n", &what).await;
        attached.close_stdin();
        if version == "v4.channel.k8s.io" && proto == "ws" {
            drop(attached);
        } else {
            let status = attached.wait_exit(&what).await;
            assert!(
                status.success(),
                "{what}: {status}; {}",
                attached.describe()
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            let status = criox_testkit::container_status(&mut rt, &id).await;
            if status.state == criox_proto::v1::ContainerState::ContainerExited as i32 {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: cat still runs after the attached client was done: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.exit_code, 0, "{what}: {status:?}");
    }
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

/// Open descriptors and threads of a process.
fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sessions_leave_no_descriptors_or_threads_in_the_daemon() {
    use criox_testkit::streaming::client;
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config, _guard) = host_pod(&mut rt, &daemon).await;
    let port = criox_testkit::free_port();
    let serve = format!(
        "mkdir -p /tmp/www && echo served > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/www"
    );
    let web = run_container(
        &mut rt,
        &pod,
        &pod_config,
        "web",
        &["sh", "-c", &serve],
        false,
        false,
    )
    .await;
    let cat = run_container(&mut rt, &pod, &pod_config, "cat", &["cat"], true, false).await;
    let filter = format!("sport = :{port}");
    for _ in 0..400 {
        let probe = Command::new("ss")
            .args(["-Hltn", &filter])
            .output()
            .unwrap();
        if !probe.stdout.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let round = |rt: Rt| {
        let (web, cat, pod) = (web.clone(), cat.clone(), pod.clone());
        async move {
            let mut rt = rt;
            for proto in ["spdy", "ws"] {
                let url = rt
                    .exec(ExecRequest {
                        container_id: web.clone(),
                        cmd: vec!["sh".into(), "-c".into(), "cat; echo err >&2".into()],
                        stdin: true,
                        stdout: true,
                        stderr: true,
                        tty: false,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .url;
                let out = tokio::task::spawn_blocking(move || {
                    client(
                        &[
                            "exec", "-proto", proto, "-url", &url, "-stdin", "-stdout", "-stderr",
                        ],
                        b"in and out\n",
                    )
                })
                .await
                .unwrap();
                assert_eq!(out.status.code(), Some(0), "{proto}: {out:?}");
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    "in and out\n",
                    "{proto}"
                );

                let url = rt
                    .port_forward(PortForwardRequest {
                        pod_sandbox_id: pod.clone(),
                        port: vec![i32::from(port)],
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .url;
                let out = tokio::task::spawn_blocking(move || {
                    client(
                        &[
                            "portforward",
                            "-proto",
                            proto,
                            "-url",
                            &url,
                            "-port",
                            &port.to_string(),
                        ],
                        b"GET /index.html HTTP/1.0\r\n\r\n",
                    )
                })
                .await
                .unwrap();
                assert_eq!(out.status.code(), Some(0), "{proto}: {out:?}");
                assert!(
                    String::from_utf8_lossy(&out.stdout).ends_with("served\n"),
                    "{proto}: {out:?}"
                );

                // An attach the client walks away from, and an exec it abandons halfway.
                let url = attach_url(&mut rt, &cat).await;
                let mut attached =
                    Attached::start(proto, "v4.channel.k8s.io,v5.channel.k8s.io", &url);
                attached.send(b"hello\n");
                attached.wait_for_output("hello\n", proto).await;
                drop(attached);
                let url = rt
                    .exec(ExecRequest {
                        container_id: web.clone(),
                        cmd: vec!["sleep".into(), "5".into()],
                        stdout: true,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .url;
                let abandoned =
                    std::process::Command::new(criox_testkit::streaming::streamclient())
                        .args(["exec", "-proto", proto, "-url", &url, "-stdout"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                let mut abandoned = criox_testkit::streaming::KillOnDrop(abandoned);
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(
                    abandoned.0.try_wait().unwrap().is_none(),
                    "{proto}: exec ended early"
                );
                drop(abandoned);
            }
            rt
        }
    };

    // One round first: lazily created state (the runtime's thread pools, caches) is not a leak.
    let rt2 = round(rt.clone()).await;
    let daemon_pid = daemon.pid();
    let settle = |baseline: (usize, usize)| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(45);
        loop {
            let now = fds_and_threads(daemon_pid);
            if now.0 <= baseline.0 && now.1 <= baseline.1 {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon keeps descriptors or threads: (fds, threads) {now:?}, before {baseline:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The abandoned sleeps end, their exec processes are reaped, idle pool threads go.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = fds_and_threads(daemon_pid);
    let mut rt2 = rt2;
    for _ in 0..3 {
        rt2 = round(rt2).await;
    }
    settle(baseline).await;
    drop(rt2);
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_https_with_the_configured_certificate() {
    let certs = tempfile::Builder::new().prefix("cxtls").tempdir().unwrap();
    let (cert, key) = criox_testkit::streaming::self_signed_cert(certs.path(), "streaming");
    let daemon = criox_testkit::daemon_with_image(
        &criox_testkit::busybox_image(),
        &format!(
            "[streaming]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config, _guard) = host_pod(&mut rt, &daemon).await;
    let id = run_container(
        &mut rt,
        &pod,
        &pod_config,
        "tls",
        &["sleep", "3600"],
        false,
        false,
    )
    .await;

    let cacert = cert.display().to_string();
    for proto in ["spdy", "ws"] {
        let url = exec_url(&mut rt, &id, &["echo", "over-tls"]).await;
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let out = criox_testkit::streaming::client(
            &[
                "exec", "-proto", proto, "-url", &url, "-stdout", "-cacert", &cacert,
            ],
            b"",
        );
        assert!(out.status.success(), "{proto}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "over-tls\n",
            "{proto}"
        );

        // A client that does not trust the certificate gets no session.
        let url = exec_url(&mut rt, &id, &["echo", "over-tls"]).await;
        let out = criox_testkit::streaming::client(
            &["exec", "-proto", proto, "-url", &url, "-stdout"],
            b"",
        );
        assert!(
            !out.status.success(),
            "{proto}: an untrusted server was accepted"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("certificate"), "{proto}: {stderr}");
        assert!(out.stdout.is_empty(), "{proto}: {out:?}");
    }

    // Plain HTTP on the TLS port is refused, and the server keeps serving.
    let url = exec_url(&mut rt, &id, &["echo", "over-tls"]).await;
    let plain = url.replacen("https://", "http://", 1);
    let out = criox_testkit::streaming::client(
        &["exec", "-proto", "spdy", "-url", &plain, "-stdout"],
        b"",
    );
    assert!(!out.status.success(), "plain HTTP was served: {out:?}");
    let out = criox_testkit::streaming::client(
        &[
            "exec", "-proto", "spdy", "-url", &url, "-stdout", "-cacert", &cacert,
        ],
        b"",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over-tls\n",
        "{out:?}"
    );
}

async fn exec_url(rt: &mut Rt, id: &str, cmd: &[&str]) -> String {
    rt.exec(ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    })
    .await
    .expect("Exec")
    .into_inner()
    .url
}

#[test]
fn a_streaming_key_that_does_not_fit_its_certificate_stops_the_start() {
    let base = tempfile::Builder::new().prefix("cxtls").tempdir().unwrap();
    let (cert, _) = criox_testkit::streaming::self_signed_cert(base.path(), "one");
    let (_, other_key) = criox_testkit::streaming::self_signed_cert(base.path(), "two");
    let missing = base.path().join("missing.key");
    for (key, named) in [(&other_key, "does not fit"), (&missing, "missing.key")] {
        let config = base.path().join("criox.toml");
        std::fs::write(
            &config,
            format!(
                "root = {:?}\nstate = {:?}\n[streaming]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
                base.path().join("root").display().to_string(),
                base.path().join("s").display().to_string(),
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .unwrap();
        let out = Command::new(criox_testkit::criox_bin())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the daemon started with {}",
            key.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.trim().lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {stderr}");
        assert!(lines[0].contains(&key.display().to_string()), "{stderr}");
        assert!(lines[0].contains(named), "{stderr}");
        assert!(
            !base.path().join("s/criox.sock").exists(),
            "a socket was left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_a_container_never_reads_does_not_stall_its_output_or_its_stop() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config, _guard) = host_pod(&mut rt, &daemon).await;
    let script = "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.2; done";
    let id = run_container(
        &mut rt,
        &pod,
        &pod_config,
        "deaf",
        &["sh", "-c", script],
        true,
        false,
    )
    .await;
    let url = attach_url(&mut rt, &id).await;
    let mut flooding = Attached::start("spdy", "v4.channel.k8s.io", &url);
    flooding.wait_for_output("\n", "before the flood").await;
    // 4 MiB, far beyond the 64 KiB of a pipe, from a thread: with back-pressure the
    // client's writes wait, and this test must not.
    let mut input = flooding.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&vec![b'x'; 4 << 20]);
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The monitor still carries output: a new session sees new lines.
    let url = attach_url(&mut rt, &id).await;
    let watching = Attached::start("ws", "v5.channel.k8s.io", &url);
    let last_tick = |output: String| -> u32 {
        output
            .lines()
            .filter_map(|l| l.strip_prefix("tick")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let seen = last_tick(flooding.output());
    watching.wait_for_output("tick", "after the flood").await;
    flooding
        .wait_for_output(&format!("tick{}\n", seen + 5), "the flooding session")
        .await;
    // And it still stops the container within its timeout.
    let started = std::time::Instant::now();
    rt.stop_container(criox_proto::v1::StopContainerRequest {
        container_id: id.clone(),
        timeout: 2,
    })
    .await
    .expect("StopContainer");
    let took = started.elapsed();
    println!("stopped {took:?} after a 4 MiB flood of unread stdin");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    let status = criox_testkit::container_status(&mut rt, &id).await;
    assert_eq!(
        status.state,
        criox_proto::v1::ContainerState::ContainerExited as i32,
        "{status:?}"
    );
    drop(watching);
    drop(flooding);
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}
