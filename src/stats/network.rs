//! Interface counters of a pod's network namespace, read from /proc/thread-self/net/dev
//! by a short-lived thread that enters the namespace: the daemon's other threads stay in
//! the host namespace, and no process is spawned.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use super::StatsError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Counters of every interface but loopback in the namespace pinned at `netns`.
pub fn read(netns: &Path) -> Result<Vec<InterfaceStats>, StatsError> {
    let netns = netns.to_path_buf();
    let worker = std::thread::spawn(move || -> Result<String, StatsError> {
        let netns_error = |source| StatsError::Netns {
            path: netns.clone(),
            source,
        };
        let file = File::open(&netns)
            .map_err(|e| netns_error(nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;
        setns(file, CloneFlags::CLONE_NEWNET).map_err(netns_error)?;
        let path = PathBuf::from("/proc/thread-self/net/dev");
        std::fs::read_to_string(&path).map_err(|source| StatsError::Read { path, source })
    });
    let text = worker.join().map_err(|_| StatsError::Parse {
        path: PathBuf::from("/proc/thread-self/net/dev"),
        detail: "reader thread panicked".to_string(),
    })??;
    Ok(parse_net_dev(&text))
}

/// Parses /proc/net/dev: two header lines, then `name: rx(8 fields) tx(8 fields)`.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let fields: Vec<u64> = counters
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if fields.len() < 16 {
                return None;
            }
            Some(InterfaceStats {
                name: name.to_string(),
                rx_bytes: fields[0],
                rx_packets: fields[1],
                rx_errors: fields[2],
                rx_dropped: fields[3],
                tx_bytes: fields[8],
                tx_packets: fields[9],
                tx_errors: fields[10],
                tx_dropped: fields[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_become_counters_without_loopback() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    0    0     0          0         0     7000      50    3    0    0     0       0          0
";
        assert_eq!(
            parse_net_dev(text),
            vec![InterfaceStats {
                name: "eth0".to_string(),
                rx_bytes: 5000,
                rx_packets: 40,
                rx_errors: 2,
                rx_dropped: 0,
                tx_bytes: 7000,
                tx_packets: 50,
                tx_errors: 3,
                tx_dropped: 0,
            }]
        );
    }

    #[test]
    fn a_missing_namespace_is_gone() {
        let err = read(Path::new("/run/criox-no-such-netns")).unwrap_err();
        assert!(err.is_gone(), "{err}");
    }

    /// A real namespace made with iproute2, holding a veth pair.
    #[test]
    fn counters_come_from_inside_the_namespace() {
        let name = format!("cxstats{}", std::process::id());
        let ip = |args: &[&str]| {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        struct Remove(String);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "delete", &self.0])
                    .status();
            }
        }
        let _remove = Remove(name.clone());
        ip(&[
            "-n", &name, "link", "add", "cxsa0", "type", "veth", "peer", "name", "cxsb0",
        ]);
        let stats = read(&Path::new("/run/netns").join(&name)).unwrap();
        let mut names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["cxsa0", "cxsb0"], "{stats:?}");
        // The namespace's interfaces are not in the host's view, nor the host's in its.
        let host = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        assert!(!host.contains("cxsa0"));
    }
}
