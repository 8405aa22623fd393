//! Bulk data both ways through the daemon's port forwarding, with client-go's dialers
//! (kubectl port-forward's code, in `kubestream`): a few MiB sent to a server in the pod
//! come back whole on the same connection, at the same time as they go up.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criox_proto::v1::PortForwardRequest;
use sha2::{Digest, Sha256};

const MIB: usize = 6;
const DIALERS: &[&str] = &["spdy", "websocket"];

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
    let mut child = Command::new(criox_testkit::go_client("kubestream"))
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
    let net = criox_testkit::pods::TestNetwork::new(ipam.path());
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    net.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let mut pod_config = criox_testkit::pods::pod_config("bulk", &criox_testkit::unique("pb"));
    pod_config.log_directory = daemon.dir.join("logs").display().to_string();
    let pod = criox_testkit::pods::run_pod(&mut rt, pod_config.clone()).await;
    // busybox httpd hands a POST body to a CGI script on its stdin and relays the
    // script's output as it comes: the script sends every byte back.
    let script = r#"mkdir -p /www/cgi-bin && {
        echo '#!/bin/sh'
        echo 'printf "Content-Type: application/octet-stream\r\n\r\n"'
        echo 'exec head -c "$CONTENT_LENGTH"'
    } > /www/cgi-bin/echo && chmod +x /www/cgi-bin/echo && exec httpd -f -p 8080 -h /www"#;
    let server = criox_testkit::run_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container("echo", &["sh", "-c", script]),
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
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}
