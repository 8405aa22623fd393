//! Shared pieces of the streaming tests: the independent Go client, and
//! `criox-streaming-host` (the streaming server over host processes) driven by JSON lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

static CLIENT: OnceLock<PathBuf> = OnceLock::new();

/// Builds hack/streamclient once per test binary (offline, Debian's Go and libraries). The
/// binary is removed when the test binary exits, passed or failed.
pub fn streamclient() -> &'static Path {
    CLIENT.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("criox-streamclient-{}", std::process::id()));
        // SAFETY: registers a plain function that only removes a file.
        unsafe { libc::atexit(remove_streamclient) };
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/streamclient/build"))
            .arg(&out)
            .status()
            .expect("run hack/streamclient/build (needs golang-go and the Debian Go packages from hack/setup)");
        assert!(status.success(), "building hack/streamclient failed");
        out
    })
}

extern "C" fn remove_streamclient() {
    if let Some(path) = CLIENT.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// The streaming server over host processes (testkit/streaming-host), which cargo builds
/// beside `criox` for the tests.
pub fn streaming_host_bin() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_criox-streaming-host")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::criox_bin().with_file_name("criox-streaming-host"))
}

/// Runs the Go client with `args` and `input` on stdin; a client that hangs fails the test.
pub fn client(args: &[&str], input: &[u8]) -> Output {
    run_with_input(
        Command::new(streamclient()).args(args),
        input,
        Duration::from_secs(60),
    )
}

/// Runs `command` to its end with `input` on its stdin and its output gathered; one that
/// runs longer than `limit` is killed and fails the test ([`wait_output`]).
pub fn run_with_input(command: &mut Command, input: &[u8], limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = wait_output(child, limit);
    let _ = writer.join();
    output
}

/// Everything `from` yields until its end, gathered by a thread of its own as it comes, so
/// that a test can look at a client's output while the client still runs.
pub fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let into = Arc::new(Mutex::new(Vec::new()));
    let sink = into.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    into
}

/// Waits for a child with a deadline; kills it (by pid) and panics when it is exceeded.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "client did not finish; stderr: {}",
                String::from_utf8_lossy(&err_reader.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// `criox-streaming-host`, stopped on drop.
pub struct HostServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub base_url: String,
}

impl HostServer {
    pub fn start() -> HostServer {
        HostServer::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> HostServer {
        let mut child = Command::new(streaming_host_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start criox-streaming-host");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("first line");
        let hello: Value = serde_json::from_str(&line).expect("base_url line");
        let base_url = hello["base_url"].as_str().expect("base_url").to_string();
        HostServer {
            child,
            stdin,
            stdout,
            base_url,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn host_port(&self) -> String {
        self.base_url.trim_start_matches("http://").to_string()
    }

    pub fn call(&mut self, request: Value) -> Value {
        let mut line = request.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
    }

    /// A URL for `request`; panics with the server's error otherwise.
    pub fn url(&mut self, request: Value) -> String {
        let reply = self.call(request.clone());
        reply["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no url for {request}: {reply}"))
            .to_string()
    }

    pub fn exec_url(
        &mut self,
        cmd: &[&str],
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> String {
        self.url(json!({"op": "exec", "cmd": cmd, "stdin": stdin, "stdout": stdout, "stderr": stderr, "tty": tty}))
    }

    /// (alive tokio tasks, open fds) of the server.
    pub fn stats(&mut self) -> (u64, u64) {
        let s = self.call(json!({"op": "stats"}));
        (s["tasks"].as_u64().unwrap(), s["fds"].as_u64().unwrap())
    }

    /// Waits until the server is back to `baseline` tasks and fds (sessions wind down
    /// asynchronously after the client sees the end); fails if it never gets there.
    pub fn assert_settles_to(&mut self, baseline: (u64, u64)) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.stats();
            if now.0 <= baseline.0 && now.1 <= baseline.1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "streaming server leaks: tasks/fds {now:?}, before {baseline:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Child processes the server still has.
    pub fn children(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .unwrap()
            .flatten()
        {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        all
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one raw HTTP request and returns the status line, headers and body as text.
pub fn raw_http(host_port: &str, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(host_port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the response is complete (Content-Length) or the server closes.
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The path of a URL (`/exec/<token>`).
pub fn path_of(url: &str) -> &str {
    let rest = url.trim_start_matches("http://");
    &rest[rest.find('/').unwrap()..]
}

/// A network namespace with loopback up, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", name])
                .status()
                .unwrap()
                .success()
        );
        let ns = Netns(name.to_string());
        assert!(
            ns.exec(&["ip", "link", "set", "lo", "up"])
                .status()
                .unwrap()
                .success()
        );
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    pub fn exec(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(cmd);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox httpd serving one index.html on 127.0.0.1:`port` inside `ns`.
pub struct Httpd {
    _process: KillOnDrop,
    _www: tempfile::TempDir,
}

impl Httpd {
    pub fn start(ns: &Netns, port: u16, index: &str) -> Httpd {
        let busybox = crate::busybox_binary();
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), index).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let process = KillOnDrop(
            ns.exec(&[
                busybox.to_str().unwrap(),
                "httpd",
                "-f",
                "-p",
                &listen,
                "-h",
                www.path().to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
        );
        let filter = format!("sport = :{port}");
        for _ in 0..400 {
            let probe = ns.exec(&["ss", "-Hltn", &filter]).output().unwrap();
            if !probe.stdout.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Httpd {
            _process: process,
            _www: www,
        }
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
pub fn self_signed_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=criox-streaming"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}
