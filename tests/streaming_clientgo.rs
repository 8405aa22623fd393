//! client-go's streaming code — the SPDY, WebSocket and fallback executors of kubectl exec
//! and attach, and the SPDY and SPDY-in-WebSocket dialers of kubectl port-forward —
//! against the daemon's streaming server, through `kubestream` (hack/kubestream), which
//! `hack/clients` builds into the directory named by CRIOX_TEST_GO_CLIENTS.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criox_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use criox_testkit::streaming::collect;
use sha2::{Digest, Sha256};

type Rt = criox_proto::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// The executors kubectl exec and attach can use: WebSocket first with SPDY when the
/// upgrade is refused is kubectl's default.
const EXECUTORS: &[&str] = &["spdy", "websocket", "fallback"];
/// kubectl port-forward's dialers: plain SPDY, and SPDY tunneled in a WebSocket.
const DIALERS: &[&str] = &["spdy", "websocket"];
/// What kubestream prints when the WebSocket upgrade is refused and SPDY takes over.
const FELL_BACK: &str = "falling back to SPDY";

/// Runs kubestream to its end with `input` on stdin; one that hangs fails the test.
fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(criox_testkit::go_client("kubestream"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubestream");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = criox_testkit::streaming::wait_output(child, Duration::from_secs(90));
    let _ = writer.join();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A kubestream session that stays open: input is sent as the test goes, output is
/// collected as it comes. Killed on drop, the way a user leaves with ^C.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    what: String,
}

impl Session {
    fn start(args: &[&str]) -> Session {
        let mut child = Command::new(criox_testkit::go_client("kubestream"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubestream");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Session {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            what: args.join(" "),
        }
    }

    fn send(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn output(&self) -> String {
        text(&self.stdout.lock().unwrap())
    }

    fn errors(&self) -> String {
        text(&self.stderr.lock().unwrap())
    }

    fn describe(&self) -> String {
        format!(
            "kubestream {}: stdout {:?}, stderr {:?}",
            self.what,
            self.output(),
            self.errors()
        )
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    async fn wait_for_output(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.output().contains(expected) {
            assert!(
                Instant::now() < deadline,
                "{expected:?} never came; {}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The collectors drain what the process wrote before it ended.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the session did not end; {}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pod on the node's network whose containers only need to run something.
async fn host_pod(
    rt: &mut Rt,
    daemon: &criox_testkit::Daemon,
) -> (String, criox_proto::v1::PodSandboxConfig) {
    let mut config = criox_testkit::pods::pod_config("kubestream", &criox_testkit::unique("uid"));
    config.log_directory = daemon.dir.join("logs").display().to_string();
    criox_testkit::pods::on_host_network(&mut config, criox_proto::v1::NamespaceMode::Container);
    let pod = criox_testkit::pods::run_pod(rt, config.clone()).await;
    (pod, config)
}

async fn container(
    rt: &mut Rt,
    pod: &str,
    pod_config: &criox_proto::v1::PodSandboxConfig,
    name: &str,
    command: &[&str],
    tweak: impl FnOnce(&mut criox_proto::v1::ContainerConfig),
) -> String {
    let mut config = criox_testkit::busybox_container(name, command);
    tweak(&mut config);
    criox_testkit::run_container(rt, pod, pod_config, config).await
}

#[derive(Clone, Copy, Default)]
struct Streams {
    stdin: bool,
    tty: bool,
}

async fn exec_url(rt: &mut Rt, id: &str, cmd: &[&str], streams: Streams) -> String {
    rt.exec(ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin: streams.stdin,
        stdout: true,
        stderr: !streams.tty,
        tty: streams.tty,
    })
    .await
    .expect("Exec")
    .into_inner()
    .url
}

async fn attach_url(rt: &mut Rt, id: &str, streams: Streams) -> String {
    rt.attach(AttachRequest {
        container_id: id.to_string(),
        stdin: streams.stdin,
        stdout: true,
        stderr: !streams.tty,
        tty: streams.tty,
    })
    .await
    .expect("Attach")
    .into_inner()
    .url
}

async fn container_exit(rt: &mut Rt, id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = rt
            .container_status(criox_proto::v1::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status");
        if status.state == criox_proto::v1::ContainerState::ContainerExited as i32 {
            return status.exit_code;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} still runs: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_a_terminal_separates_the_streams_and_passes_exit_codes_on() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config) = host_pod(&mut rt, &daemon).await;
    let id = container(
        &mut rt,
        &pod,
        &pod_config,
        "sleeper",
        &["sleep", "3600"],
        |_| {},
    )
    .await;

    // Enough to take many frames and messages each way, each line telling where it was.
    let input: String = (0..20_000)
        .map(|i| format!("line {i} of what the user typed\n"))
        .collect();
    for &protocol in EXECUTORS {
        for code in [0, 1, 42] {
            let script = format!("echo out {code}; echo err {code} >&2; exit {code}");
            let url = exec_url(&mut rt, &id, &["sh", "-c", &script], Streams::default()).await;
            let out = run(&["exec", &url, "--protocol", protocol], b"");
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let what = format!("{protocol}, exit {code}: {out:?}");
            assert_eq!(out.status.code(), Some(code), "{what}");
            assert_eq!(stdout, format!("out {code}\n"), "{what}");
            let expected_err = if code == 0 {
                format!("err {code}\n")
            } else {
                format!("err {code}\ncommand terminated with exit code {code}\n")
            };
            assert_eq!(stderr, expected_err, "{what}");
        }

        let streams = Streams {
            stdin: true,
            tty: false,
        };
        let url = exec_url(&mut rt, &id, &["cat"], streams).await;
        let out = run(
            &["exec", &url, "--protocol", protocol, "--stdin"],
            input.as_bytes(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{protocol}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).is_empty(),
            "{protocol}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stdout == input.as_bytes(),
            "{protocol}: cat gave back {} bytes of {}, ending {:?}",
            out.stdout.len(),
            input.len(),
            text(&out.stdout[out.stdout.len().saturating_sub(80)..])
        );

        // A command that ends while the user still types: the session ends with it.
        let url = exec_url(&mut rt, &id, &["head", "-n", "1"], streams).await;
        let mut session = Session::start(&["exec", &url, "--protocol", protocol, "--stdin"]);
        session.send(b"first\nsecond\n");
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(0), "{}", session.describe());
        assert_eq!(session.output(), "first\n", "{}", session.describe());
    }

    // Output far beyond any buffer arrives whole: 16 MiB of random bytes, checked by digest.
    let make = "head -c 16777216 /dev/urandom > /tmp/blob && sha256sum /tmp/blob";
    let url = exec_url(&mut rt, &id, &["sh", "-c", make], Streams::default()).await;
    let out = run(&["exec", &url], b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let blob_sha = text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    for &protocol in EXECUTORS {
        let url = exec_url(&mut rt, &id, &["cat", "/tmp/blob"], Streams::default()).await;
        let started = Instant::now();
        let out = run(&["exec", &url, "--protocol", protocol], b"");
        let took = started.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{protocol}: {}",
            text(&out.stderr)
        );
        assert_eq!(out.stdout.len(), 16 << 20, "{protocol}");
        assert_eq!(sha256_hex(&out.stdout), blob_sha, "{protocol}");
        eprintln!(
            "exec over {protocol}: 16 MiB of stdout in {took:?} ({:.0} MiB/s)",
            16.0 / took.as_secs_f64()
        );
    }

    // A command that is not there: the user is told which, and gets no output.
    let url = exec_url(&mut rt, &id, &["no-such-command"], Streams::default()).await;
    let out = run(&["exec", &url], b"");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stderr).contains("no-such-command"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // A WebSocket upgrade the server refuses (a client speaking only a newer version) sends
    // kubectl to SPDY with the same URL, which must still be good.
    let script = "echo out; echo err >&2; exit 42";
    let url = exec_url(&mut rt, &id, &["sh", "-c", script], Streams::default()).await;
    let newer = ["--websocket-protocols", "v6.channel.k8s.io"];
    let out = run(
        &[&["exec", &url, "--protocol", "fallback"][..], &newer].concat(),
        b"",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    assert!(
        stderr.contains(FELL_BACK) && stderr.contains("unable to negotiate protocol"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("err\ncommand terminated with exit code 42\n"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "out\n");

    // Once a session ran, its URL is spent, and the user is told so.
    for &protocol in EXECUTORS {
        let out = run(&["exec", &url, "--protocol", protocol], b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{protocol}: {out:?}");
        assert!(
            stderr.contains("unknown, used or expired streaming token"),
            "{protocol}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{protocol}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_echoes_input_and_follows_resizes() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config) = host_pod(&mut rt, &daemon).await;
    let id = container(
        &mut rt,
        &pod,
        &pod_config,
        "sleeper",
        &["sleep", "3600"],
        |_| {},
    )
    .await;
    let tty = Streams {
        stdin: true,
        tty: true,
    };

    for &protocol in EXECUTORS {
        // kubectl exec -it: the terminal echoes what is typed, output lines end in CRLF.
        let script = "read line; echo \"got $line\"; exit 3";
        let url = exec_url(&mut rt, &id, &["sh", "-c", script], tty).await;
        let mut session =
            Session::start(&["exec", &url, "--protocol", protocol, "--stdin", "--tty"]);
        session.send(b"hello\n");
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(3), "{protocol}: {}", session.describe());
        assert_eq!(
            session.output(),
            "hello\r\ngot hello\r\n",
            "{protocol}: {}",
            session.describe()
        );

        // ^C typed in the terminal interrupts the command, as at a local shell.
        let script = "echo ready; sleep 100";
        let url = exec_url(&mut rt, &id, &["sh", "-c", script], tty).await;
        let mut session =
            Session::start(&["exec", &url, "--protocol", protocol, "--stdin", "--tty"]);
        session.wait_for_output("ready\r\n").await;
        session.send(b"\x03");
        let status = session.wait_exit().await;
        assert_eq!(
            status.code(),
            Some(130),
            "{protocol}: {}",
            session.describe()
        );
        assert!(
            session
                .errors()
                .contains("command terminated with exit code 130"),
            "{protocol}: {}",
            session.describe()
        );

        // The first size is the user's terminal; a SIGWINCH sends the new one.
        let script = "stty size; i=0; while [ \"$(stty size)\" != '50 132' ]; do \
                      i=$((i+1)); [ $i -gt 300 ] && exit 9; sleep 0.1; done; \
                      echo resized; stty size";
        let url = exec_url(&mut rt, &id, &["sh", "-c", script], tty).await;
        let mut session = Session::start(&[
            "exec",
            &url,
            "--protocol",
            protocol,
            "--stdin",
            "--tty",
            "--rows",
            "24",
            "--cols",
            "80",
            "--resize-to",
            "50x132",
        ]);
        session.wait_for_output("24 80\r\n").await;
        session.signal(nix::sys::signal::Signal::SIGWINCH);
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(0), "{protocol}: {}", session.describe());
        assert_eq!(
            session.output(),
            "24 80\r\nresized\r\n50 132\r\n",
            "{protocol}: {}",
            session.describe()
        );
        assert!(
            !session.errors().contains(FELL_BACK),
            "{protocol}: {}",
            session.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reaches_the_container_terminal_and_stdin() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config) = host_pod(&mut rt, &daemon).await;

    for (i, &protocol) in EXECUTORS.iter().enumerate() {
        // kubectl attach -it to a shell: the attach sets the terminal's size, the shell
        // answers what is typed, and its exit ends the session.
        let name = format!("shell{i}");
        let shell = container(&mut rt, &pod, &pod_config, &name, &["sh"], |c| {
            c.stdin = true;
            c.tty = true;
        })
        .await;
        let tty = Streams {
            stdin: true,
            tty: true,
        };
        let url = attach_url(&mut rt, &shell, tty).await;
        let rows = (30 + i).to_string();
        let mut session = Session::start(&[
            "attach",
            &url,
            "--protocol",
            protocol,
            "--stdin",
            "--tty",
            "--rows",
            &rows,
            "--cols",
            "90",
            "--resize-to",
            "40x100",
        ]);
        session.send(b"stty size; echo \"attached over $((6*7))\"\n");
        session.wait_for_output(&format!("{rows} 90\r\n")).await;
        session.wait_for_output("attached over 42\r\n").await;
        // The user's terminal changes size while attached.
        session.signal(nix::sys::signal::Signal::SIGWINCH);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !session.output().contains("40 100\r\n") {
            assert!(
                Instant::now() < deadline,
                "{protocol}: the resize never reached the terminal; {}",
                session.describe()
            );
            session.send(b"stty size\n");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        session.send(b"exit 5\n");
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(0), "{protocol}: {}", session.describe());
        assert_eq!(container_exit(&mut rt, &shell).await, 5, "{protocol}");

        // kubectl attach -i to a program reading its stdin (stdinOnce): its two outputs
        // stay apart, and ending the input ends the program and the session.
        let name = format!("reader{i}");
        let script = "while read l; do echo \"out $l\"; echo \"err $l\" >&2; done; echo bye";
        let reader = container(
            &mut rt,
            &pod,
            &pod_config,
            &name,
            &["sh", "-c", script],
            |c| {
                c.stdin = true;
                c.stdin_once = true;
            },
        )
        .await;
        let url = attach_url(
            &mut rt,
            &reader,
            Streams {
                stdin: true,
                tty: false,
            },
        )
        .await;
        let mut session = Session::start(&["attach", &url, "--protocol", protocol, "--stdin"]);
        session.send(b"one\n");
        session.wait_for_output("out one\n").await;
        session.send(b"two\n");
        session.wait_for_output("out two\n").await;
        session.close_stdin();
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(0), "{protocol}: {}", session.describe());
        let log = std::fs::read_to_string(daemon.dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default();
        assert_eq!(
            session.output(),
            "out one\nout two\nbye\n",
            "{protocol}: {}; the container logged {log:?}",
            session.describe()
        );
        assert_eq!(session.errors(), "err one\nerr two\n", "{protocol}");
        assert_eq!(container_exit(&mut rt, &reader).await, 0, "{protocol}");
    }
}

/// `kubestream portforward URL 0:REMOTE` once it listens, with its local address.
async fn forward(url: &str, remote: u16, protocol: &str, extra: &[&str]) -> (Session, String) {
    let ports = format!("0:{remote}");
    let mut args = vec!["portforward", url, &ports, "--protocol", protocol];
    args.extend_from_slice(extra);
    let session = Session::start(&args);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(local) = session
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("ready "))
        {
            let local = local.to_string();
            return (session, local);
        }
        assert!(
            Instant::now() < deadline,
            "the forward never listened; {}",
            session.describe()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP/1.0 GET through the forwarded port: (status line, body). With `half_close`
/// the request is followed by the end of the client's sending side, which must reach the
/// server in the pod without cutting the response short.
fn get(local: &str, path: &str, half_close: bool) -> (String, Vec<u8>) {
    let mut conn = std::net::TcpStream::connect(local).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").as_bytes())
        .unwrap();
    if half_close {
        conn.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut response = Vec::new();
    conn.read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("GET {path}: {e} after {} bytes", response.len()));
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no HTTP response in {:?}", text(&response)));
    let head = text(&response[..split]);
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, response[split + 4..].to_vec())
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fetches the page and the large file through `local`, checks them, and returns how long
/// the large file took.
async fn fetch_and_check(local: &str, big_sha: &str, what: &str) -> Duration {
    let local = local.to_string();
    let big_sha = big_sha.to_string();
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        let (status, body) = get(&local, "/index.html", false);
        assert!(status.contains(" 200 "), "{what}: {status}");
        assert_eq!(text(&body), "served in the pod\n", "{what}");
        // Two at once: each connection is its own pair of streams.
        let started = Instant::now();
        let fetches: Vec<_> = [false, true]
            .into_iter()
            .map(|half_close| {
                let local = local.clone();
                std::thread::spawn(move || get(&local, "/big", half_close))
            })
            .collect();
        for fetch in fetches {
            let (status, body) = fetch.join().unwrap();
            assert!(status.contains(" 200 "), "{what}: {status}");
            assert_eq!(body.len(), BIG_MIB << 20, "{what}");
            assert_eq!(sha256_hex(&body), big_sha, "{what}");
        }
        started.elapsed()
    })
    .await
    .unwrap()
}

const BIG_MIB: usize = 8;

/// A shell script that writes the page and the large file, then serves them on `port`.
fn httpd_script(port: u16) -> String {
    format!(
        "mkdir -p /www && echo 'served in the pod' > /www/index.html && \
         dd if=/dev/urandom of=/www/big bs=1048576 count={BIG_MIB} 2>/dev/null && \
         exec httpd -f -p {port} -h /www"
    )
}

/// The large file's digest, as sha256sum in the container prints it.
async fn big_sha(rt: &mut Rt, id: &str, extra: &[&str]) -> String {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = exec_url(
            rt,
            id,
            &["sh", "-c", "pidof httpd >/dev/null && sha256sum /www/big"],
            Streams::default(),
        )
        .await;
        let mut args = vec!["exec".to_string(), url];
        args.extend(extra.iter().cloned());
        let out = tokio::task::spawn_blocking(move || {
            run(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"")
        })
        .await
        .unwrap();
        if out.status.success() {
            return text(&out.stdout)
                .split_whitespace()
                .next()
                .expect("a digest")
                .to_string();
        }
        assert!(Instant::now() < deadline, "httpd never started: {out:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_fetches_pages_from_httpd_in_the_pod() {
    let ipam = tempfile::Builder::new().prefix("cxpf").tempdir().unwrap();
    let net = criox_testkit::pods::TestNetwork::new(ipam.path());
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    net.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let mut pod_config = criox_testkit::pods::pod_config("web", &criox_testkit::unique("pf"));
    pod_config.log_directory = daemon.dir.join("logs").display().to_string();
    let pod = criox_testkit::pods::run_pod(&mut rt, pod_config.clone()).await;
    let web = container(
        &mut rt,
        &pod,
        &pod_config,
        "web",
        &["sh", "-c", &httpd_script(8080)],
        |_| {},
    )
    .await;
    let sha = big_sha(&mut rt, &web, &[]).await;

    for &protocol in DIALERS {
        let url = rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![8080],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let (session, local) = forward(&url, 8080, protocol, &[]).await;
        let took = fetch_and_check(&local, &sha, protocol).await;
        eprintln!(
            "port-forward over {protocol}: 2 x {BIG_MIB} MiB at once in {took:?} ({:.0} MiB/s)",
            (2 * BIG_MIB) as f64 / took.as_secs_f64()
        );
        // The same forward serves connections after the first ones ended.
        fetch_and_check(&local, &sha, protocol).await;
        assert!(
            !session.errors().contains(FELL_BACK),
            "{}",
            session.describe()
        );
        // ^C ends kubectl port-forward cleanly.
        session.signal(nix::sys::signal::Signal::SIGINT);
        let mut session = session;
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(0), "{}", session.describe());
    }

    // Nothing listens on the port: the user is told why, and the forward ends.
    for &protocol in DIALERS {
        let url = rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![9],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let (mut session, local) = forward(&url, 9, protocol, &[]).await;
        let received = tokio::task::spawn_blocking(move || {
            let mut conn = std::net::TcpStream::connect(&local).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut received = Vec::new();
            let _ = conn.read_to_end(&mut received);
            received
        })
        .await
        .unwrap();
        assert!(received.is_empty(), "{protocol}: {}", text(&received));
        let status = session.wait_exit().await;
        assert_eq!(status.code(), Some(1), "{}", session.describe());
        let errors = session.errors().to_lowercase();
        assert!(
            errors.contains("connection refused") && errors.contains("lost connection to pod"),
            "{}",
            session.describe()
        );
    }
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_over_https_trusts_the_given_ca() {
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
    let (pod, pod_config) = host_pod(&mut rt, &daemon).await;
    let port = criox_testkit::free_port();
    let web = container(
        &mut rt,
        &pod,
        &pod_config,
        "web",
        &["sh", "-c", &httpd_script(port)],
        |_| {},
    )
    .await;
    let ca = cert.display().to_string();

    for &protocol in EXECUTORS {
        let url = exec_url(&mut rt, &web, &["echo", "over tls"], Streams::default()).await;
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let out = run(&["exec", &url, "--protocol", protocol, "--ca", &ca], b"");
        assert_eq!(out.status.code(), Some(0), "{protocol}: {out:?}");
        assert_eq!(text(&out.stdout), "over tls\n", "{protocol}");

        // Without the CA the client refuses the server, and no command output shows.
        let url = exec_url(&mut rt, &web, &["echo", "over tls"], Streams::default()).await;
        let out = run(&["exec", &url, "--protocol", protocol], b"");
        assert_eq!(out.status.code(), Some(1), "{protocol}: {out:?}");
        assert!(
            text(&out.stderr).contains("certificate"),
            "{protocol}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{protocol}: {out:?}");
    }

    let sha = big_sha(&mut rt, &web, &["--ca", &ca]).await;
    for &protocol in DIALERS {
        let url = rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![i32::from(port)],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        let (session, local) = forward(&url, port, protocol, &["--ca", &ca]).await;
        fetch_and_check(&local, &sha, &format!("{protocol} over TLS")).await;
        assert!(
            !session.errors().contains(FELL_BACK),
            "{}",
            session.describe()
        );
    }
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_outlive_the_clients_heartbeats() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let (pod, pod_config) = host_pod(&mut rt, &daemon).await;
    let port = criox_testkit::free_port();
    let web = container(
        &mut rt,
        &pod,
        &pod_config,
        "web",
        &["sh", "-c", &httpd_script(port)],
        |_| {},
    )
    .await;
    let sha = big_sha(&mut rt, &web, &[]).await;

    // client-go pings every 5 s (SPDY and WebSocket executors) or 10 s (the tunneling
    // dialer); a server that mishandled them would end these quiet sessions.
    let mut quiet = Vec::new();
    for &protocol in EXECUTORS {
        let url = exec_url(
            &mut rt,
            &web,
            &["sh", "-c", "sleep 11; echo still here"],
            Streams::default(),
        )
        .await;
        quiet.push(tokio::task::spawn_blocking(move || {
            (protocol, run(&["exec", &url, "--protocol", protocol], b""))
        }));
    }
    let mut forwards = Vec::new();
    for &protocol in DIALERS {
        let url = rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.clone(),
                port: vec![i32::from(port)],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url;
        forwards.push((protocol, forward(&url, port, protocol, &[]).await));
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    for (protocol, (session, local)) in &forwards {
        fetch_and_check(local, &sha, &format!("{protocol} after a quiet while")).await;
        assert!(
            !session.errors().contains(FELL_BACK),
            "{}",
            session.describe()
        );
    }
    for task in quiet {
        let (protocol, out) = task.await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{protocol}: {out:?}");
        assert_eq!(text(&out.stdout), "still here\n", "{protocol}");
    }
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}
