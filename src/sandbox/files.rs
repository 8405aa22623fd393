//! The pod's hostname, hosts and resolv.conf files, which its containers bind-mount.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::network::Dns;

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const HOST_HOSTS: &str = "/etc/hosts";

pub fn write_hostname(path: &Path, hostname: &str) -> std::io::Result<()> {
    write_shared(path, format!("{hostname}\n"))
}

/// The containers' users, non-root ones included, read these files through their bind
/// mounts, so they are world-readable whatever the daemon's umask; the pod's directory
/// keeps host users out.
fn write_shared(path: &Path, data: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// The pod's DNS configuration, or the host's resolv.conf when the pod gives none.
pub fn write_resolv_conf(path: &Path, dns: Option<&Dns>) -> std::io::Result<()> {
    match dns {
        Some(dns) => write_shared(path, resolv_conf(dns)),
        None => match std::fs::read(HOST_RESOLV_CONF) {
            Ok(data) => write_shared(path, data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_shared(path, b""),
            Err(e) => Err(e),
        },
    }
}

fn resolv_conf(dns: &Dns) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        let _ = writeln!(out, "search {}", dns.searches.join(" "));
    }
    for server in &dns.servers {
        let _ = writeln!(out, "nameserver {server}");
    }
    if !dns.options.is_empty() {
        let _ = writeln!(out, "options {}", dns.options.join(" "));
    }
    out
}

/// Loopback names plus the pod's addresses under its hostname; for host-network pods
/// the host's own file.
pub fn write_hosts(
    path: &Path,
    host_network: bool,
    hostname: &str,
    ips: &[IpAddr],
) -> std::io::Result<()> {
    if host_network && let Ok(data) = std::fs::read(HOST_HOSTS) {
        return write_shared(path, data);
    }
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        for ip in ips {
            let _ = writeln!(out, "{ip}\t{hostname}");
        }
    }
    write_shared(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_config_becomes_resolv_conf_lines() {
        let dns = Dns {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into(), "timeout:2".into()],
        };
        assert_eq!(
            resolv_conf(&dns),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n\
             nameserver fd00::a\noptions ndots:5 timeout:2\n"
        );
    }

    #[test]
    fn hosts_lists_the_pod_addresses_under_its_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        write_hosts(&path, false, "web-0", &["10.1.0.4".parse().unwrap()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.1.0.4\tweb-0\n"));
    }
}
