//! cAdvisor-style metrics of pods and their containers, for a kubelet that takes them from
//! the runtime instead of cAdvisor (ListMetricDescriptors, ListPodSandboxMetrics).
//!
//! Names, types and meanings follow what the kubelet exposes on /metrics/cadvisor, so
//! dashboards and alerts keep working. Every metric carries the same base labels; a few
//! families add one or two (the CPU, the interface, the device). Values are unsigned
//! integers on the wire, so seconds are whole seconds.

mod families;

use std::path::Path;

use criox_proto::v1::{ContainerMetrics, Metric, PodSandboxMetrics, UInt64Value};

pub use families::descriptors;
use families::*;

use super::CriServer;
use crate::container::manager::now_ns;
use crate::container::record::{ContainerRecord, State};
use crate::sandbox::Pod;
use crate::stats::cgroup::{CgroupStats, Hierarchy};
use crate::stats::cgroup_detail::CgroupDetail;
use crate::stats::{disk, network};

/// Collects the metrics of one pod or container: its base label values and one timestamp.
struct Sink {
    base: [String; 6],
    timestamp: i64,
    metrics: Vec<Metric>,
}

impl Sink {
    fn new(base: [String; 6], timestamp: i64) -> Sink {
        Sink {
            base,
            timestamp,
            metrics: Vec::new(),
        }
    }

    fn add(&mut self, family: &Family, extra: &[&str], value: u64) {
        debug_assert_eq!(extra.len(), family.extra.len(), "{}", family.name);
        self.metrics.push(Metric {
            name: family.name.to_string(),
            timestamp: self.timestamp,
            metric_type: family.kind as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(extra.iter().map(|v| v.to_string()))
                .collect(),
            value: Some(UInt64Value { value }),
        });
    }

    fn add_some(&mut self, family: &Family, value: Option<u64>) {
        if let Some(value) = value {
            self.add(family, &[], value);
        }
    }

    /// What cAdvisor reports for any cgroup, pod or container.
    fn cgroup(&mut self, stats: &CgroupStats, detail: &CgroupDetail) {
        let seconds = |ns: u64| ns / 1_000_000_000;
        let m = &stats.memory;
        self.add(&CPU_USAGE, &["total"], seconds(stats.cpu_usage_ns));
        self.add_some(&CPU_USER, detail.cpu_user_ns.map(seconds));
        self.add_some(&CPU_SYSTEM, detail.cpu_system_ns.map(seconds));
        self.add(&MEMORY_USAGE, &[], m.usage_bytes);
        self.add(&MEMORY_WORKING_SET, &[], m.working_set_bytes);
        self.add(&MEMORY_RSS, &[], m.rss_bytes);
        self.add(&MEMORY_CACHE, &[], m.cache_bytes);
        self.add_some(&MEMORY_FAILCNT, detail.memory_failcnt);
        self.add_some(&MEMORY_MAX_USAGE, detail.memory_max_usage_bytes);
        // The controllers count faults over the cgroup and its descendants.
        self.add(&MEMORY_FAILURES, &["pgfault", "hierarchy"], m.page_faults);
        self.add(
            &MEMORY_FAILURES,
            &["pgmajfault", "hierarchy"],
            m.major_page_faults,
        );
        self.add_some(&OOM_EVENTS, detail.oom_kills);
        self.add(&SPEC_MEMORY_LIMIT, &[], m.limit_bytes.unwrap_or(0));
        self.add_some(&SPEC_CPU_QUOTA, detail.cpu_quota_us);
        self.add_some(&SPEC_CPU_PERIOD, detail.cpu_period_us);
        self.add_some(&SPEC_CPU_SHARES, detail.cpu_shares);
        self.add_some(&PROCESSES, detail.processes);
        self.add_some(&THREADS, detail.threads.or(stats.processes));
        self.add_some(&CFS_PERIODS, detail.cfs_periods);
        self.add_some(&CFS_THROTTLED_PERIODS, detail.cfs_throttled_periods);
        self.add_some(&CFS_THROTTLED_SECONDS, detail.cfs_throttled_ns.map(seconds));
        self.add_some(&MEMORY_KERNEL, detail.memory_kernel_bytes);
        self.add_some(&MEMORY_MAPPED_FILE, detail.memory_mapped_file_bytes);
        self.add_some(&MEMORY_SWAP, detail.memory_swap_bytes);
        self.add(
            &SPEC_MEMORY_SWAP_LIMIT,
            &[],
            detail.memory_swap_limit_bytes.unwrap_or(0),
        );
        self.add(&THREADS_MAX, &[], detail.threads_max.unwrap_or(0));
        self.add_some(&FILE_DESCRIPTORS, detail.file_descriptors);
        self.add_some(&SOCKETS, detail.sockets);
        for io in &detail.io {
            let (major, minor) = (io.major.to_string(), io.minor.to_string());
            let device = format!("{major}:{minor}");
            let device = [device.as_str()];
            self.add(&FS_READS_BYTES, &device, io.read_bytes);
            self.add(&FS_READS, &device, io.reads);
            self.add(&FS_WRITES_BYTES, &device, io.write_bytes);
            self.add(&FS_WRITES, &device, io.writes);
            for (operation, bytes) in [("Read", io.read_bytes), ("Write", io.write_bytes)] {
                self.add(
                    &BLKIO_DEVICE_USAGE,
                    &[device[0], &major, &minor, operation],
                    bytes,
                );
            }
        }
        self.add(&LAST_SEEN, &[], (self.timestamp / 1_000_000_000) as u64);
    }

    fn interfaces(&mut self, interfaces: &[network::InterfaceStats]) {
        for i in interfaces {
            let name = [i.name.as_str()];
            self.add(&NET_RX_BYTES, &name, i.rx_bytes);
            self.add(&NET_RX_PACKETS, &name, i.rx_packets);
            self.add(&NET_RX_ERRORS, &name, i.rx_errors);
            self.add(&NET_RX_DROPPED, &name, i.rx_dropped);
            self.add(&NET_TX_BYTES, &name, i.tx_bytes);
            self.add(&NET_TX_PACKETS, &name, i.tx_packets);
            self.add(&NET_TX_ERRORS, &name, i.tx_errors);
            self.add(&NET_TX_DROPPED, &name, i.tx_dropped);
        }
    }

    fn writable_layer(&mut self, upper: &Path) {
        let device = upper.display().to_string();
        let device = [device.as_str()];
        if let Ok(usage) = disk::usage(upper) {
            self.add(&FS_USAGE, &device, usage.bytes);
        }
        if let Ok(capacity) = disk::capacity(upper) {
            self.add(&FS_LIMIT, &device, capacity.bytes);
            self.add(&FS_INODES, &device, capacity.inodes);
            self.add(&FS_INODES_FREE, &device, capacity.inodes_free);
        }
    }
}

/// Both readings of a live cgroup; None when it is gone or unreadable.
fn read_cgroup(key: &str, cgroup: &str) -> Option<(CgroupStats, CgroupDetail)> {
    if cgroup.is_empty() {
        return None;
    }
    let hierarchy = Hierarchy::host();
    match hierarchy.read(Path::new(cgroup)) {
        Ok(stats) => Some((stats, hierarchy.read_detail(Path::new(cgroup)))),
        Err(e) => {
            if !e.is_gone() {
                tracing::warn!(%key, %cgroup, error = %e, "cannot read cgroup statistics");
            }
            None
        }
    }
}

/// A ready pod's metrics: its cgroup and network namespace, then each running container.
pub fn pod_metrics(
    server: &CriServer,
    pod: &Pod,
    containers: &[ContainerRecord],
) -> PodSandboxMetrics {
    let timestamp = now_ns();
    let namespace = &pod.spec.namespace;
    let pod_name = &pod.spec.name;
    let mut sink = Sink::new(
        [
            String::new(),
            pod.cgroup_parent().to_string(),
            String::new(),
            pod.id.clone(),
            namespace.clone(),
            pod_name.clone(),
        ],
        timestamp,
    );
    if let Some((stats, detail)) = read_cgroup(&pod.id, pod.cgroup_parent()) {
        sink.cgroup(&stats, &detail);
        sink.add(&START_TIME, &[], (pod.created_at / 1_000_000_000) as u64);
    }
    if let Some(netns) = &pod.paths.namespaces.network {
        match network::read(netns) {
            Ok(interfaces) => sink.interfaces(&interfaces),
            Err(e) if !e.is_gone() => {
                tracing::warn!(pod = %pod.id, error = %e, "cannot read network statistics");
            }
            Err(_) => {}
        }
    }
    let container_metrics = containers
        .iter()
        .filter(|c| c.pod_id == pod.id && c.state == State::Running)
        .filter_map(|c| {
            let (stats, detail) = read_cgroup(&c.id, &c.cgroup)?;
            let mut sink = Sink::new(
                [
                    c.name.clone(),
                    c.cgroup.clone(),
                    c.image.clone(),
                    c.id.clone(),
                    namespace.clone(),
                    pod_name.clone(),
                ],
                timestamp,
            );
            sink.cgroup(&stats, &detail);
            sink.add(&START_TIME, &[], (c.started_at / 1_000_000_000) as u64);
            sink.writable_layer(&server.containers.writable_layer(&c.id));
            Some(ContainerMetrics {
                container_id: c.id.clone(),
                metrics: sink.metrics,
            })
        })
        .collect();
    PodSandboxMetrics {
        pod_sandbox_id: pod.id.clone(),
        metrics: sink.metrics,
        container_metrics,
    }
}

#[cfg(test)]
mod tests {
    use criox_proto::v1::MetricType;

    use super::*;
    use crate::stats::cgroup::MemoryStats;

    fn sink() -> Sink {
        Sink::new(
            ["c", "/cg", "img", "id", "ns", "pod"].map(String::from),
            5_000_000_000,
        )
    }

    #[test]
    fn every_metric_has_a_descriptor_with_as_many_label_keys() {
        let mut sink = sink();
        let stats = CgroupStats {
            cpu_usage_ns: 2_500_000_000,
            memory: MemoryStats {
                usage_bytes: 10,
                limit_bytes: Some(100),
                ..Default::default()
            },
            processes: Some(1),
        };
        let detail = CgroupDetail {
            cpu_user_ns: Some(1),
            cpu_system_ns: Some(1),
            memory_failcnt: Some(0),
            memory_max_usage_bytes: Some(1),
            oom_kills: Some(0),
            cpu_quota_us: Some(1),
            cpu_period_us: Some(1),
            cpu_shares: Some(1),
            processes: Some(1),
            threads: Some(1),
            cfs_periods: Some(1),
            cfs_throttled_periods: Some(1),
            cfs_throttled_ns: Some(1),
            memory_kernel_bytes: Some(1),
            memory_mapped_file_bytes: Some(1),
            memory_swap_bytes: Some(1),
            memory_swap_limit_bytes: Some(1),
            threads_max: Some(1),
            file_descriptors: Some(1),
            sockets: Some(1),
            io: vec![crate::stats::cgroup_detail::DeviceIo {
                major: 8,
                minor: 0,
                ..Default::default()
            }],
        };
        sink.cgroup(&stats, &detail);
        sink.interfaces(&[network::InterfaceStats {
            name: "eth0".to_string(),
            ..Default::default()
        }]);
        sink.add(&START_TIME, &[], 1);
        let dir = tempfile::tempdir().unwrap();
        sink.writable_layer(dir.path());
        let descriptors = descriptors();
        let mut seen = std::collections::HashSet::new();
        for metric in &sink.metrics {
            let d = descriptors
                .iter()
                .find(|d| d.name == metric.name)
                .unwrap_or_else(|| panic!("no descriptor for {}", metric.name));
            assert_eq!(d.label_keys.len(), metric.label_values.len(), "{}", d.name);
            seen.insert(metric.name.clone());
        }
        // Every family is exercised when every figure is there.
        assert_eq!(seen.len(), FAMILIES.len());
        let cpu = sink
            .metrics
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.value.as_ref().unwrap().value, 2);
        assert_eq!(cpu.label_values.last().unwrap(), "total");
        assert_eq!(cpu.metric_type, MetricType::Counter as i32);
    }

    #[test]
    fn unlimited_memory_is_a_zero_limit_and_no_quota_is_left_out() {
        let mut sink = sink();
        sink.cgroup(&CgroupStats::default(), &CgroupDetail::default());
        let limit = sink
            .metrics
            .iter()
            .find(|m| m.name == "container_spec_memory_limit_bytes")
            .unwrap();
        assert_eq!(limit.value.as_ref().unwrap().value, 0);
        assert!(
            !sink
                .metrics
                .iter()
                .any(|m| m.name == "container_spec_cpu_quota")
        );
    }
}
