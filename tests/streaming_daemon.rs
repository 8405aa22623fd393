//! The daemon's Exec, Attach and PortForward RPCs and the streaming server it starts.

mod common;
mod pods_support;
mod streaming_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Daemon;
use criox_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};
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
        streaming_support::raw_http(
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
    let net = pods_support::TestNetwork::new(&daemon.dir);
    net.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let pod = pods_support::run_pod(
        &mut rt,
        pods_support::pod_config("web", &common::unique("pf")),
    )
    .await;
    let (_, info) = pods_support::status(&mut rt, &pod).await;
    let netns = info["namespaces"]["network"].as_str().unwrap().to_string();

    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "served in the pod\n").unwrap();
    let busybox = streaming_support::busybox();
    let httpd = streaming_support::KillOnDrop(
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
            streaming_support::client(
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
    let mut forward = streaming_support::KillOnDrop(
        Command::new(common::BIN)
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
