//! IPv6 between pods: two dual-stack pods on one bridge reach each other over their IPv6
//! addresses.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criox_testkit::Daemon;
use criox_testkit::pods::*;

/// Why this machine cannot carry IPv6 between pods, if it cannot.
fn ipv6_unavailable() -> Option<String> {
    let knob = "/proc/sys/net/ipv6/conf/all/disable_ipv6";
    match std::fs::read_to_string(knob) {
        Err(e) => Some(format!("{knob}: {e} (the kernel has no IPv6)")),
        Ok(v) if v.trim() != "0" => Some(format!("{knob} is {}", v.trim())),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn dual_stack_pods_reach_each_other_over_ipv6() {
    if let Some(reason) = ipv6_unavailable() {
        println!("skipped: IPv6 is disabled here: {reason}");
        return;
    }
    let daemon = Daemon::start().await;
    // A unique local /64 of this test's own.
    let v6 = format!("fd01:{:x}::", std::process::id() % 0xffff);
    let (_leftovers, net) = private_dual_stack_network(&daemon, &v6);
    let mut rt = daemon.runtime().await;

    let mut pods = Vec::new();
    for name in ["six-a", "six-b"] {
        let id = run_pod(&mut rt, pod_config(name, &criox_testkit::unique("u6"))).await;
        let (st, info) = status(&mut rt, &id).await;
        let network = st.network.unwrap();
        let ip6 = network
            .additional_ips
            .iter()
            .map(|ip| ip.ip.clone())
            .find(|ip| ip.contains(':'))
            .unwrap_or_else(|| panic!("pod {name} has no IPv6 address: {network:?}"));
        assert!(ip6.starts_with(&v6), "{ip6} not in {v6}/64");
        let netns = PathBuf::from(info["namespaces"]["network"].as_str().unwrap());
        pods.push((id, ip6, netns));
    }
    let (_, server_ip, server_ns) = pods[1].clone();
    let (_, client_ip, client_ns) = pods[0].clone();

    let listener = in_netns(&server_ns, || TcpListener::bind("[::]:8080").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).unwrap();
        conn.write_all(format!("pong from {}", peer.ip()).as_bytes())
            .unwrap();
        got
    });
    let target = format!("[{server_ip}]:8080");
    let reply = in_netns(&client_ns, move || {
        // The new addresses may still be in duplicate address detection for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            match TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(2)) {
                Ok(conn) => break conn,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("connect to {target}: {e}"),
            }
        };
        conn.write_all(b"ping").unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        reply
    });
    assert_eq!(&server.join().unwrap(), b"ping");
    // The server saw the client's own IPv6 address: no translation on the way.
    assert_eq!(reply, format!("pong from {client_ip}"));

    for (id, _, _) in &pods {
        stop_and_remove_pod(&mut rt, id).await;
    }
    assert!(net.allocations().is_empty());
}
