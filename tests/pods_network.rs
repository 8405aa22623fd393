//! Pods on a real CNI bridge network: addresses, pod-to-pod traffic, DNS files, host
//! ports, NetworkReady, restart safety and the shared PID namespace.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use criox_proto::v1::{
    DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    PodSandboxFilter, PortMapping, StopPodSandboxRequest,
};
use criox_testkit::Daemon;
use criox_testkit::dir_entries;
use criox_testkit::pods::*;

#[tokio::test]
async fn pods_get_their_ip_on_eth0_and_reach_each_other() {
    let daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let mut rt = daemon.runtime().await;

    let mut a = pod_config("web-a", &criox_testkit::unique("ua"));
    a.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["test.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let a_id = run_pod(&mut rt, a).await;
    let b_id = run_pod(&mut rt, pod_config("web-b", &criox_testkit::unique("ub"))).await;

    let (a_status, a_info) = status(&mut rt, &a_id).await;
    let (b_status, b_info) = status(&mut rt, &b_id).await;
    assert_eq!(a_status.state, 0, "ready");
    let a_ip = a_status.network.unwrap().ip;
    let b_ip = b_status.network.unwrap().ip;
    assert!(
        a_ip.starts_with(&net.prefix),
        "{a_ip} not in {}",
        net.prefix
    );
    assert_ne!(a_ip, b_ip);
    assert_eq!(a_info["networkCheck"], "ok", "{a_info}");

    let a_netns = PathBuf::from(a_info["namespaces"]["network"].as_str().unwrap());
    let b_netns = PathBuf::from(b_info["namespaces"]["network"].as_str().unwrap());
    assert!(a_netns.starts_with(&daemon.state));
    let addrs = eth0_addresses(&a_netns);
    assert!(addrs.contains(&format!("inet {a_ip}/24")), "{addrs}");

    // A listener in pod B answers a client in pod A.
    let listen_ip = b_ip.clone();
    let listener = in_netns(&b_netns, move || {
        TcpListener::bind(format!("{listen_ip}:7000")).unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(b"hello from b").unwrap();
        peer.ip().to_string()
    });
    let target = b_ip.clone();
    let reply = in_netns(&a_netns, move || {
        let mut conn = TcpStream::connect_timeout(
            &format!("{target}:7000").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        reply
    });
    assert_eq!(reply, "hello from b");
    assert_eq!(server.join().unwrap(), a_ip);

    // DNS options land in the pod's resolv.conf, its hostname and hosts files exist.
    let resolv = std::fs::read_to_string(a_info["resolvConfPath"].as_str().unwrap()).unwrap();
    assert_eq!(
        resolv,
        "search test.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let hosts = std::fs::read_to_string(a_info["hostsPath"].as_str().unwrap()).unwrap();
    assert!(hosts.contains(&format!("{a_ip}\tweb-a")), "{hosts}");
    let hostname = std::fs::read_to_string(a_info["hostnamePath"].as_str().unwrap()).unwrap();
    assert_eq!(hostname, "web-a\n");

    stop_and_remove_pod(&mut rt, &a_id).await;
    stop_and_remove_pod(&mut rt, &b_id).await;
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    assert_eq!(net.veths(), 0);
}

#[tokio::test]
async fn host_port_reaches_the_pod_and_is_removed_on_stop() {
    let daemon = Daemon::start().await;
    let (_leftovers, _net) = criox_testkit::pods::private_network(&daemon);
    let mut rt = daemon.runtime().await;
    let host_port = 20000 + (std::process::id() % 20000) as i32;
    let mut config = pod_config("ports", &criox_testkit::unique("up"));
    config.port_mappings = vec![PortMapping {
        protocol: 0,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let id = run_pod(&mut rt, config).await;
    let (ip, netns) = ip_and_netns(&mut rt, &id).await;
    let dnat = format!("--to-destination {ip}:8080");
    let rules = iptables_save();
    assert!(
        rules
            .lines()
            .any(|l| l.contains(&dnat) && l.contains(&format!("--dport {host_port}"))),
        "no DNAT rule for {host_port} -> {ip}:8080 in:\n{rules}"
    );

    let listener = in_netns(&netns, || TcpListener::bind("0.0.0.0:8080").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"pong").unwrap();
    });
    let mut conn = TcpStream::connect_timeout(
        &format!("127.0.0.1:{host_port}").parse().unwrap(),
        Duration::from_secs(5),
    )
    .expect("hostPort on 127.0.0.1");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "pong");
    server.join().unwrap();

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    let rules = iptables_save();
    assert!(!rules.contains(&dnat), "DNAT rule left after stop");
    // A second stop is fine.
    stop_and_remove_pod(&mut rt, &id).await;
}

#[tokio::test]
async fn network_ready_flips_when_a_configuration_appears() {
    let daemon = Daemon::start().await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    let mut rt = daemon.runtime().await;
    let network_ready = |resp: criox_proto::v1::StatusResponse| {
        resp.status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap()
    };
    let before = network_ready(criox_testkit::runtime_status(&mut rt, false).await);
    assert!(!before.status);
    assert_eq!(before.reason, "NetworkPluginNotReady");

    // A conflist naming a plugin that does not exist is not ready either.
    std::fs::write(
        daemon.cni_dir.join("05-bad.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    let bad = network_ready(criox_testkit::runtime_status(&mut rt, false).await);
    assert!(!bad.status);
    assert!(bad.message.contains("no-such-plugin"), "{bad:?}");
    std::fs::remove_file(daemon.cni_dir.join("05-bad.conflist")).unwrap();

    let net = TestNetwork::new(&daemon.dir);
    net.install(&daemon.cni_dir);
    let after = network_ready(criox_testkit::runtime_status(&mut rt, false).await);
    assert!(after.status, "{after:?}");
}

#[tokio::test]
async fn pods_and_their_ips_survive_a_daemon_crash() {
    let mut daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let mut rt = daemon.runtime().await;
    let mut config = pod_config("keep", &criox_testkit::unique("uk"));
    config.labels = labels(&[("app", "keep")]);
    let id = run_pod(&mut rt, config).await;
    let ip = status(&mut rt, &id).await.0.network.unwrap().ip;
    daemon.kill();
    // The configuration changes while the daemon is down: DEL must still use the
    // configuration of the ADD.
    std::fs::remove_file(daemon.cni_dir.join("10-test.conflist")).unwrap();
    daemon.spawn().await;
    let mut rt = daemon.runtime().await;
    let listed = criox_testkit::list_pods_where(
        &mut rt,
        PodSandboxFilter {
            label_selector: labels(&[("app", "keep")]),
            ..PodSandboxFilter::default()
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, 0);
    let (st, _) = status(&mut rt, &id[..12]).await;
    assert_eq!(st.network.unwrap().ip, ip);
    assert_eq!(net.allocations(), vec![ip.clone()]);
    stop_and_remove_pod(&mut rt, &id).await;
    assert!(
        net.allocations().is_empty(),
        "IP still allocated after stop"
    );
    assert_eq!(net.veths(), 0);
    // Stop and remove of a removed pod succeed.
    stop_and_remove_pod(&mut rt, &id).await;
}

#[tokio::test]
async fn a_shared_pid_namespace_runs_an_infra_process_that_goes_with_the_pod() {
    let daemon = Daemon::start().await;
    let (_leftovers, _net) = criox_testkit::pods::private_network(&daemon);
    let mut rt = daemon.runtime().await;
    let mut config = pod_config("shared-pid", &criox_testkit::unique("us"));
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: 0,
                ..NamespaceOption::default()
            }),
            ..LinuxSandboxSecurityContext::default()
        }),
        ..LinuxPodSandboxConfig::default()
    });
    let id = run_pod(&mut rt, config).await;
    let (_, info) = status(&mut rt, &id).await;
    let pid = info["infraPid"].as_i64().expect("infra pid") as i32;
    let nspid = criox_testkit::proc_status_field(pid, "NSpid:");
    assert_eq!(
        nspid.split('\t').next_back(),
        Some("1"),
        "not PID 1 of its namespace: NSpid: {nspid}"
    );
    // It lives in the pod's network namespace, and the PID namespace is pinned.
    let netns = info["namespaces"]["network"].as_str().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .ino(),
        std::fs::metadata(netns).unwrap().ino()
    );
    let pid_pin = info["namespaces"]["pid"].as_str().unwrap();
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .unwrap()
            .ino(),
        std::fs::metadata(pid_pin).unwrap().ino()
    );
    stop_and_remove_pod(&mut rt, &id).await;
    assert!(
        !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .contains("pod-infra"),
        "infra process {pid} still running"
    );
}

#[tokio::test]
async fn a_dual_stack_pod_reports_both_addresses() {
    let daemon = Daemon::start().await;
    let v6 = format!("fd00:{:x}::", std::process::id() % 0xffff);
    let (_leftovers, net) = private_dual_stack_network(&daemon, &v6);
    let mut rt = daemon.runtime().await;
    let id = run_pod(&mut rt, pod_config("dual", &criox_testkit::unique("ud"))).await;
    let (st, info) = status(&mut rt, &id).await;
    let network = st.network.unwrap();
    assert!(network.ip.starts_with(&net.prefix), "{network:?}");
    assert_eq!(network.additional_ips.len(), 1, "{network:?}");
    let ip6 = &network.additional_ips[0].ip;
    assert!(ip6.starts_with(&v6), "{ip6} not in {v6}/64");
    let netns = info["namespaces"]["network"].as_str().unwrap();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ip", "-o", "-6", "addr", "show", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("inet6 {ip6}/64")), "{text}");
    stop_and_remove_pod(&mut rt, &id).await;
    assert!(net.allocations().is_empty());
}

#[tokio::test]
async fn an_infra_process_ends_when_its_pod_state_is_wiped() {
    let mut daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let mut rt = daemon.runtime().await;
    // No namespace options: PID mode POD, so the pod has an infra process.
    let id = run_pod(&mut rt, pod_config("wiped", &criox_testkit::unique("uw"))).await;
    let (_, info) = status(&mut rt, &id).await;
    let pid = info["infraPid"].as_i64().unwrap();
    daemon.kill();
    criox_testkit::unmount_below(&daemon.state);
    std::fs::remove_dir_all(daemon.state.join("pods")).unwrap();
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .contains("pod-infra")
    };
    assert!(running());
    for _ in 0..150 {
        if !running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!running(), "infra {pid} outlived its pod's state");

    // The pod's namespace is gone; stop and remove still release its address. (The
    // bridge plugin finds its masquerade rule through the namespace, so that rule stays
    // here; after a reboot, the one real way to lose the namespace, it is gone anyway.)
    daemon.spawn().await;
    let mut rt = daemon.runtime().await;
    let (st, _) = status(&mut rt, &id).await;
    assert_eq!(st.state, 1, "a pod without its namespace is not ready");
    stop_and_remove_pod(&mut rt, &id).await;
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    assert!(dir_entries(&daemon.root.join("network")).is_empty());
}
