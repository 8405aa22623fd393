//! The streaming protocols end to end: `criox-streaming-host` serves host processes, and
//! an independent Go client (Debian's spdystream and gorilla/websocket, the libraries the
//! Kubernetes clients are built on) drives it over SPDY/3.1 and WebSocket.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use criox_testkit::streaming::{HostServer, Httpd, Netns, client, path_of, raw_http};
use serde_json::json;

const PROTOCOLS: [&str; 2] = ["spdy", "ws"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_separates_stdout_and_stderr_and_reports_exit_codes() {
    let mut server = HostServer::start();
    let baseline = server.stats();
    for proto in PROTOCOLS {
        for (script, code) in [
            ("echo out; echo err >&2; exit 0", 0),
            ("echo out; echo err >&2; exit 1", 1),
            ("echo out; echo err >&2; kill -9 $$", 137),
        ] {
            let url = server.exec_url(&["sh", "-c", script], false, true, true, false);
            let out = client(
                &["exec", "-proto", proto, "-url", &url, "-stdout", "-stderr"],
                b"",
            );
            assert_eq!(
                out.status.code(),
                Some(code),
                "{proto} {script}: {}",
                text(&out.stderr)
            );
            assert_eq!(text(&out.stdout), "out\n", "{proto} {script}");
            assert_eq!(text(&out.stderr), "err\n", "{proto} {script}");
        }
    }
    server.assert_settles_to(baseline);
    assert!(server.children().is_empty(), "exec'd processes left behind");
}

#[test]
fn exec_echoes_stdin_until_the_client_closes_it() {
    let mut server = HostServer::start();
    // Large enough to cross many frames and the clients' buffers in both directions.
    let input: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for proto in PROTOCOLS {
        let url = server.exec_url(&["cat"], true, true, false, false);
        let out = client(
            &["exec", "-proto", proto, "-url", &url, "-stdin", "-stdout"],
            &input,
        );
        assert_eq!(out.status.code(), Some(0), "{proto}: {}", text(&out.stderr));
        assert!(
            out.stdout == input,
            "{proto}: echoed {} of {} bytes",
            out.stdout.len(),
            input.len()
        );
    }
}

#[test]
fn older_remotecommand_versions_are_negotiated() {
    let mut server = HostServer::start();
    for (proto, version) in [
        ("spdy", "v3.channel.k8s.io"),
        ("spdy", "v2.channel.k8s.io"),
        ("spdy", "channel.k8s.io"),
        ("ws", "v4.channel.k8s.io"),
    ] {
        let url = server.exec_url(&["sh", "-c", "echo ok"], false, true, false, false);
        let out = client(
            &[
                "exec", "-proto", proto, "-version", version, "-url", &url, "-stdout",
            ],
            b"",
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{version}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "ok\n", "{version}");
        // Before v4 a failure is reported as text, without a machine-readable exit code.
        let url = server.exec_url(&["sh", "-c", "exit 7"], false, true, false, false);
        let out = client(
            &[
                "exec", "-proto", proto, "-version", version, "-url", &url, "-stdout",
            ],
            b"",
        );
        if version == "v4.channel.k8s.io" {
            assert_eq!(out.status.code(), Some(7), "{version}");
        } else {
            assert_eq!(out.status.code(), Some(255), "{version}");
            assert!(
                text(&out.stderr).contains("non-zero exit code"),
                "{version}: {}",
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn tty_exec_gets_a_terminal_and_resize_events() {
    let mut server = HostServer::start();
    for proto in PROTOCOLS {
        // Waits for the resize to arrive rather than racing it.
        let script = r#"while [ "$(stty size)" != "33 101" ]; do sleep 0.05; done; echo "size $(stty size)"; [ -t 0 ] && echo terminal; exit 3"#;
        let url = server.exec_url(&["sh", "-c", script], true, true, false, true);
        let out = client(
            &[
                "exec", "-proto", proto, "-url", &url, "-stdin", "-stdout", "-tty", "-resize",
                "101x33",
            ],
            b"",
        );
        assert_eq!(out.status.code(), Some(3), "{proto}: {}", text(&out.stderr));
        let output = text(&out.stdout);
        // A terminal turns \n into \r\n.
        assert!(output.contains("size 33 101\r\n"), "{proto}: {output:?}");
        assert!(output.contains("terminal\r\n"), "{proto}: {output:?}");
    }
}

#[test]
fn attach_joins_a_running_process() {
    let mut server = HostServer::start();
    for proto in PROTOCOLS {
        let id = format!("attach-{proto}");
        let reply = server.call(json!({"op": "spawn", "id": id, "cmd": ["sh", "-c", "read line; echo got $line; echo bye >&2"]}));
        assert_eq!(reply["ok"], true, "{reply}");
        let url = server
            .url(json!({"op": "attach", "id": id, "stdin": true, "stdout": true, "stderr": true}));
        let out = client(
            &[
                "attach", "-proto", proto, "-url", &url, "-stdin", "-stdout", "-stderr",
            ],
            b"hello\n",
        );
        assert_eq!(out.status.code(), Some(0), "{proto}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "got hello\n", "{proto}");
        assert_eq!(text(&out.stderr), "bye\n", "{proto}");
    }
    let reply = server.call(json!({"op": "attach", "id": "nothing", "stdout": true}));
    assert!(
        reply["error"].as_str().unwrap().contains("not found"),
        "{reply}"
    );
}

#[test]
fn port_forward_reaches_httpd_inside_a_network_namespace() {
    let name = format!("crioxpf{}", std::process::id() % 100_000);
    let ns = Netns::new(&name);
    let httpd = Httpd::start(&ns, 8080, "hello from the pod\n");
    let mut server = HostServer::start();
    let baseline = server.stats();
    let request = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n";
    for proto in PROTOCOLS {
        let url = server.url(json!({"op": "portforward", "pod": ns.path(), "ports": [8080]}));
        let out = client(
            &[
                "portforward",
                "-proto",
                proto,
                "-url",
                &url,
                "-port",
                "8080",
            ],
            request,
        );
        assert_eq!(out.status.code(), Some(0), "{proto}: {}", text(&out.stderr));
        let response = text(&out.stdout);
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n"),
            "{proto}: {response:?}"
        );
        assert!(
            response.ends_with("hello from the pod\n"),
            "{proto}: {response:?}"
        );

        // The same port in the host's namespace has nothing listening (it is the pod's).
        let url = server.url(json!({"op": "portforward", "pod": ns.path(), "ports": [8081]}));
        let out = client(
            &[
                "portforward",
                "-proto",
                proto,
                "-url",
                &url,
                "-port",
                "8081",
            ],
            request,
        );
        assert_eq!(out.status.code(), Some(1), "{proto}");
        assert!(
            text(&out.stderr).contains("failed to connect to localhost:8081"),
            "{proto}: {}",
            text(&out.stderr)
        );
    }
    server.assert_settles_to(baseline);
    drop(httpd);
}

#[test]
fn many_concurrent_sessions_complete_and_leave_nothing_behind() {
    let mut server = HostServer::start();
    let baseline = server.stats();
    let mut urls = Vec::new();
    for i in 0..48 {
        urls.push((
            i,
            server.exec_url(&["sh", "-c", "cat; exit 5"], true, true, false, false),
        ));
    }
    let handles: Vec<_> = urls
        .into_iter()
        .map(|(i, url)| {
            std::thread::spawn(move || {
                let proto = PROTOCOLS[i % 2];
                let input = format!("session {i}\n").repeat(1000);
                let out = client(
                    &["exec", "-proto", proto, "-url", &url, "-stdin", "-stdout"],
                    input.as_bytes(),
                );
                assert_eq!(
                    out.status.code(),
                    Some(5),
                    "session {i}: {}",
                    text(&out.stderr)
                );
                assert_eq!(text(&out.stdout), input, "session {i}");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a session failed");
    }
    server.assert_settles_to(baseline);
}

#[test]
fn bad_tokens_and_protocols_get_clear_http_errors() {
    let mut server = HostServer::start();
    let hp = server.host_port();
    let upgrade = |path: &str, proto_header: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {hp}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n{proto_header}\r\n"
        )
    };
    let v4 = "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n";

    let reply = raw_http(&hp, &upgrade("/exec/0123456789abcdef", v4));
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(reply.contains("unknown, used or expired"), "{reply}");

    let reply = raw_http(&hp, &upgrade("/nothing/here", v4));
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");

    // A token works once.
    let url = server.exec_url(&["true"], false, true, false, false);
    let out = client(&["exec", "-url", &url, "-stdout"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = client(&["exec", "-url", &url, "-stdout"], b"");
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));

    // An unknown subprotocol is refused with the accepted ones listed.
    let url = server.exec_url(&["true"], false, true, false, false);
    let reply = raw_http(
        &hp,
        &upgrade(
            path_of(&url),
            "X-Stream-Protocol-Version: v9.channel.k8s.io\r\n",
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{reply}"
    );
    let url = server.exec_url(&["true"], false, true, false, false);
    let out = client(
        &[
            "exec",
            "-proto",
            "ws",
            "-version",
            "v9.channel.k8s.io",
            "-url",
            &url,
            "-stdout",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));

    // No protocol header, no upgrade at all, and a token used on the wrong endpoint.
    let url = server.exec_url(&["true"], false, true, false, false);
    let reply = raw_http(&hp, &upgrade(path_of(&url), ""));
    assert!(
        reply.starts_with("HTTP/1.1 400")
            && reply.contains("X-Stream-Protocol-Version is required"),
        "{reply}"
    );
    let url = server.exec_url(&["true"], false, true, false, false);
    let reply = raw_http(
        &hp,
        &format!("GET {} HTTP/1.1\r\nHost: {hp}\r\n\r\n", path_of(&url)),
    );
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("missing upgrade headers"),
        "{reply}"
    );
    let url = server.exec_url(&["true"], false, true, false, false);
    let wrong = path_of(&url).replace("/exec/", "/attach/");
    let reply = raw_http(&hp, &upgrade(&wrong, v4));
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");

    // Requests the server refuses to store.
    let reply = server.call(json!({"op": "exec", "cmd": ["true"]}));
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("one of stdin, stdout, or stderr"),
        "{reply}"
    );
    let reply = server
        .call(json!({"op": "exec", "cmd": ["true"], "stdout": true, "stderr": true, "tty": true}));
    assert!(
        reply["error"].as_str().unwrap().contains("tty and stderr"),
        "{reply}"
    );
}

#[test]
fn broken_clients_and_floods_leave_the_server_unharmed() {
    let mut server = HostServer::start();
    let hp = server.host_port();
    let baseline = server.stats();

    // A client that disconnects mid-stream: the exec'd process is stopped.
    for proto in PROTOCOLS {
        let url = server.exec_url(
            &["sh", "-c", "echo started; exec sleep 1000"],
            false,
            true,
            false,
            false,
        );
        let mut child = Command::new(criox_testkit::streaming::streamclient())
            .args(["exec", "-proto", proto, "-url", &url, "-stdout"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = [0u8; 8];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        assert_eq!(&first, b"started\n");
        assert!(!server.children().is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !server.children().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{proto}: exec'd process outlived its client"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Garbage after a valid SPDY upgrade, and a truncated frame.
    for garbage in [
        &b"\xff\xff\xff\xff\x00\x00\x00\x10not spdy at all!"[..],
        &b"\x80\x03\x00\x01\x00\x00"[..],
    ] {
        let url = server.exec_url(&["true"], false, true, false, false);
        let mut s = std::net::TcpStream::connect(&hp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        write!(
            s,
            "POST {} HTTP/1.1\r\nHost: {hp}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
            path_of(&url)
        )
        .unwrap();
        // The server may drop the connection as soon as it has read the garbage, before
        // this side writes all of it or shuts its half down; only the upgrade reply counts.
        let _ = s.write_all(garbage);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(text(&rest).starts_with("HTTP/1.1 101"), "{}", text(&rest));
    }

    // A flood: many connections, some idle, some with half a request, all dropped.
    let mut sockets = Vec::new();
    for i in 0..300 {
        let mut s = std::net::TcpStream::connect(&hp).unwrap();
        if i % 3 == 1 {
            let _ = s.write_all(b"POST /exec/x HTTP/1.1\r\nHost: a\r\n");
        } else if i % 3 == 2 {
            let _ = s.write_all(b"\x00\x01garbage\r\n\r\n");
        }
        sockets.push(s);
    }
    // The server keeps serving while they are open.
    let url = server.exec_url(&["echo", "still here"], false, true, false, false);
    let out = client(&["exec", "-url", &url, "-stdout"], b"");
    assert_eq!(text(&out.stdout), "still here\n", "{}", text(&out.stderr));
    drop(sockets);

    server.assert_settles_to(baseline);
    assert!(server.children().is_empty());
}

#[test]
fn expired_tokens_are_refused() {
    let mut server = HostServer::start_with(&["--token-ttl-ms", "1"]);
    let url = server.exec_url(&["true"], false, true, false, false);
    std::thread::sleep(Duration::from_millis(20));
    for proto in PROTOCOLS {
        let out = client(&["exec", "-proto", proto, "-url", &url, "-stdout"], b"");
        assert_eq!(out.status.code(), Some(3), "{proto}");
        assert!(
            text(&out.stderr).contains("expired"),
            "{proto}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_process_that_stopped_cannot_be_attached() {
    let mut server = HostServer::start();
    let reply = server
        .call(json!({"op": "spawn", "id": "short", "cmd": ["sh", "-c", "read line; echo done"]}));
    assert_eq!(reply["ok"], true, "{reply}");
    let attach = json!({"op": "attach", "id": "short", "stdin": true, "stdout": true});
    let first = server.url(attach.clone());
    let later: Vec<String> = PROTOCOLS
        .iter()
        .map(|_| server.url(attach.clone()))
        .collect();
    // The first session ends the process.
    let out = client(&["attach", "-url", &first, "-stdin", "-stdout"], b"go\n");
    assert_eq!(text(&out.stdout), "done\n", "{}", text(&out.stderr));
    // URLs issued while it ran report that it stopped, on the error stream.
    for (proto, url) in PROTOCOLS.iter().zip(&later) {
        let out = client(
            &["attach", "-proto", proto, "-url", url, "-stdin", "-stdout"],
            b"",
        );
        assert_eq!(out.status.code(), Some(255), "{proto}");
        assert!(
            text(&out.stderr).contains("container short is not running"),
            "{proto}: {}",
            text(&out.stderr)
        );
    }
    // And no new URL is issued for it.
    let reply = server.call(attach);
    assert!(
        reply["error"].as_str().unwrap().contains("is not running"),
        "{reply}"
    );
}
