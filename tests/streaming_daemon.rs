//! The daemon's Exec, Attach and PortForward RPCs and the streaming server it starts.

mod common;
mod streaming_support;

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
