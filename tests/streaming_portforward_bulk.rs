//! Bulk data both ways through the daemon's port forwarding, with client-go's dialers
//! (kubectl port-forward's code, in `kubestream`): a few MiB sent to a server in the pod
//! come back whole on the same connection, at the same time as they go up.

mod common;
mod pods_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criox_proto::v1::PortForwardRequest;
use sha2::{Digest, Sha256};

const MIB: usize = 6;
const DIALERS: &[&str] = &["spdy", "websocket"];

fn kubestream() -> PathBuf {
    let dir = std::env::var("CRIOX_TEST_GO_CLIENTS").unwrap_or_else(|_| {
        panic!("CRIOX_TEST_GO_CLIENTS is not set: run `hack/clients target/go kubestream`")
    });
    PathBuf::from(dir).join("kubestream")
}

/// A running `kubestream portforward`, killed on drop.
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the forward and returns it with the local address it listens on.
fn forward(url: &str, remote: u16, protocol: &str) -> (Forward, String) {
    let mut child = Command::new(kubestream())
        .args([
            "portforward",
            url,
            &format!("0:{remote}"),
            "--protocol",
            protocol,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kubestream");
    let stdout = child.stdout.take().unwrap();
    let forward = Forward(child);
    let mut lines = BufReader::new(stdout).lines();
    let local = lines
        .find_map(|l| l.ok()?.strip_prefix("ready ").map(str::to_string))
        .expect("the forward never listened");
    (forward, local)
}

fn digest(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Sends `data` as an HTTP POST to the echo script and reads the answer while sending, as
/// the script answers as it reads.
fn echo_through(local: &str, data: &[u8]) -> Vec<u8> {
    let mut conn = std::net::TcpStream::connect(local).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = conn.try_clone().unwrap();
    let received = std::thread::spawn(move || {
        let mut response = Vec::new();
        let _ = reader.read_to_end(&mut response);
        response
    });
    let head = format!(
        "POST /cgi-bin/echo HTTP/1.0\r\nHost: pod\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        data.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(data).unwrap();
    let response = received.join().unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response in {} bytes", response.len()));
    let status = String::from_utf8_lossy(&response[..split]).into_owned();
    assert!(status.contains(" 200 "), "{status}");
    response[split + 4..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_carries_megabytes_both_ways() {
    let ipam = tempfile::Builder::new().prefix("cxpb").tempdir().unwrap();
    let net = pods_support::TestNetwork::new(ipam.path());
    let (daemon, _conf) = common::daemon_with_image(&common::busybox_image(), "").await;
    net.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let mut pod_config = pods_support::pod_config("bulk", &common::unique("pb"));
    pod_config.log_directory = daemon.dir.join("logs").display().to_string();
    let pod = pods_support::run_pod(&mut rt, pod_config.clone()).await;
    // busybox httpd hands a POST body to a CGI script on its stdin and relays the
    // script's output as it comes: the script sends every byte back.
    let script = r#"mkdir -p /www/cgi-bin && {
        echo '#!/bin/sh'
        echo 'printf "Content-Type: application/octet-stream\r\n\r\n"'
        echo 'exec head -c "$CONTENT_LENGTH"'
    } > /www/cgi-bin/echo && chmod +x /www/cgi-bin/echo && exec httpd -f -p 8080 -h /www"#;
    let server = common::run_container(
        &mut rt,
        &pod,
        &pod_config,
        common::busybox_container("echo", &["sh", "-c", script]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = rt
            .exec_sync(criox_proto::v1::ExecSyncRequest {
                container_id: server.clone(),
                cmd: vec!["pidof".into(), "httpd".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        if out.exit_code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "httpd never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut data = vec![0u8; MIB << 20];
    // Not compressible and not repeating: a lost or reordered chunk changes the digest.
    let mut state = std::process::id() as u64 | 1;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let data = std::sync::Arc::new(data);

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
        let (forward, local) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || forward(&url, 8080, protocol)
        })
        .await
        .unwrap();
        let started = Instant::now();
        let body = tokio::task::spawn_blocking({
            let data = data.clone();
            let local = local.clone();
            move || echo_through(&local, &data)
        })
        .await
        .unwrap();
        let took = started.elapsed();
        assert_eq!(body.len(), data.len(), "{protocol}: bytes echoed");
        assert!(
            digest(&body) == digest(&data),
            "{protocol}: the echoed data differs from what was sent"
        );
        eprintln!(
            "port-forward over {protocol}: {MIB} MiB up and {MIB} MiB down at once in {took:?}"
        );
        drop(forward);
    }
    pods_support::stop_and_remove_pod(&mut rt, &pod).await;
}
