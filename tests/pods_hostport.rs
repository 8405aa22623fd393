//! Host ports beyond plain TCP: a UDP mapping carries datagrams both ways, and a mapping
//! bound to a host IP answers on that address only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use criox_proto::v1::{PortMapping, Protocol};
use criox_testkit::Daemon;
use criox_testkit::pods::*;

/// Host ports of this test binary: apart from other tests' and other runs'.
fn host_port(n: u32) -> i32 {
    (40000 + (std::process::id() % 5000) * 4 + n) as i32
}

async fn pod_with_mapping(
    daemon: &Daemon,
    name: &str,
    mapping: PortMapping,
) -> (String, String, PathBuf) {
    let mut rt = daemon.runtime().await;
    let mut config = pod_config(name, &criox_testkit::unique("hp"));
    config.port_mappings = vec![mapping];
    let id = run_pod(&mut rt, config).await;
    let (ip, netns) = ip_and_netns(&mut rt, &id).await;
    (id, ip, netns)
}

#[tokio::test]
async fn a_udp_host_port_carries_datagrams_both_ways() {
    let daemon = Daemon::start().await;
    let (_leftovers, _net) = criox_testkit::pods::private_network(&daemon);
    let port = host_port(0);
    let (id, ip, netns) = pod_with_mapping(
        &daemon,
        "udp",
        PortMapping {
            protocol: Protocol::Udp as i32,
            container_port: 5353,
            host_port: port,
            host_ip: String::new(),
        },
    )
    .await;

    let server = in_netns(&netns, || UdpSocket::bind("0.0.0.0:5353").unwrap());
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = server
            .recv_from(&mut buf)
            .expect("no datagram reached the pod");
        server
            .send_to(&[b"echo:", &buf[..n]].concat(), from)
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .send_to(b"ping", format!("127.0.0.1:{port}"))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = client
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no answer through UDP host port {port} to {ip}:5353: {e}"));
    assert_eq!(&buf[..n], b"echo:ping");
    assert_eq!(echo.join().unwrap(), "ping");

    let mut rt = daemon.runtime().await;
    stop_and_remove_pod(&mut rt, &id).await;
    let rules = iptables_save();
    assert!(
        !rules.contains(&format!("--to-destination {ip}:5353")),
        "UDP DNAT rule left after the pod went"
    );
}

#[tokio::test]
async fn a_host_port_bound_to_an_ip_answers_on_that_ip_only() {
    let daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let port = host_port(1);
    let (id, ip, netns) = pod_with_mapping(
        &daemon,
        "hostip",
        PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            host_port: port,
            host_ip: "127.0.0.1".into(),
        },
    )
    .await;

    let listener = in_netns(&netns, || TcpListener::bind("0.0.0.0:8080").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"pong").unwrap();
    });
    // The bridge's own address is a host address too, but not the mapping's: while the
    // pod listens, a connection there must not reach it.
    let gateway = format!("{}.1:{port}", net.prefix);
    let other = TcpStream::connect_timeout(&gateway.parse().unwrap(), Duration::from_secs(2));
    assert!(
        other.is_err(),
        "host port {port} bound to 127.0.0.1 also answers on {gateway}"
    );

    let mut conn = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("host port {port} on 127.0.0.1 to {ip}:8080: {e}"));
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "pong");
    server.join().unwrap();

    let mut rt = daemon.runtime().await;
    stop_and_remove_pod(&mut rt, &id).await;
}
