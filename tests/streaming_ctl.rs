//! `criox ctl exec`, `attach` and `port-forward` against the streaming server: the
//! WebSocket client in the binary, on the same server the Go client tests use.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use criox_testkit::criox_bin;
use criox_testkit::streaming::{HostServer, Httpd, KillOnDrop, Netns};
use serde_json::json;

fn ctl(args: &[&str], input: &[u8]) -> Output {
    criox_testkit::streaming::run_with_input(
        Command::new(criox_bin()).arg("ctl").args(args),
        input,
        Duration::from_secs(60),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ctl_exec_and_attach_stream_and_return_the_exit_code() {
    let mut server = HostServer::start();
    let baseline = server.stats();

    let url = server.exec_url(
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        true,
        true,
        false,
    );
    let out = ctl(&["exec", "--url", &url, "c"], b"");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    let url = server.exec_url(&["tr", "a-z", "A-Z"], true, true, true, false);
    let out = ctl(&["exec", "-i", "--url", &url, "c"], b"shout\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SHOUT\n");

    let url = server.exec_url(
        &["sh", "-c", "[ -t 1 ] && echo tty"],
        true,
        true,
        false,
        true,
    );
    let out = ctl(&["exec", "-i", "-t", "--url", &url, "c"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tty\r\n");

    let reply = server.call(
        json!({"op": "spawn", "id": "ctl-attach", "cmd": ["sh", "-c", "read l; echo attached $l"]}),
    );
    assert_eq!(reply["ok"], true);
    let url = server.url(
        json!({"op": "attach", "id": "ctl-attach", "stdin": true, "stdout": true, "stderr": true}),
    );
    let out = ctl(&["attach", "-i", "--url", &url, "ctl-attach"], b"yes\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "attached yes\n");

    // A used URL is refused with the server's reason.
    let out = ctl(&["exec", "--url", &url, "c"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));

    server.assert_settles_to(baseline);
}

#[test]
fn ctl_port_forward_carries_a_local_connection_into_the_pod() {
    let name = format!("crioxctl{}", std::process::id() % 100_000);
    let ns = Netns::new(&name);
    let _httpd = Httpd::start(&ns, 8090, "through ctl\n");
    let mut server = HostServer::start();
    let url = server.url(json!({"op": "portforward", "pod": ns.path(), "ports": [8090]}));
    let mut forward = KillOnDrop(
        Command::new(criox_bin())
            .args(["ctl", "port-forward", "--url", &url, "pod", "0:8090"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(forward.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let local = line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.split(" -> ").next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let mut conn = std::net::TcpStream::connect(&local).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
    assert!(response.ends_with("through ctl\n"), "{response:?}");
    // With a single URL, the forward ends after its one connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = forward.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "port-forward did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn ctl_exec_reports_the_runtime_refusal() {
    let daemon = criox_testkit::Daemon::start().await;
    let out = daemon.ctl(&["exec", "nosuch", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("container nosuch not found"), "{err}");
}
