//! The metric families: names, types and help as the kubelet's /metrics/cadvisor has
//! them, and the descriptors ListMetricDescriptors answers with.

use criox_proto::v1::{MetricDescriptor, MetricType};

/// Labels of every metric, in this order; the kubelet's cAdvisor-compatible set.
pub(super) const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// One metric family: what the descriptor says and what each metric of it carries.
pub struct Family {
    pub name: &'static str,
    help: &'static str,
    pub kind: MetricType,
    /// Label keys after the base ones.
    pub extra: &'static [&'static str],
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        extra: &[],
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        extra: &[],
    }
}

const fn with(family: Family, extra: &'static [&'static str]) -> Family {
    Family { extra, ..family }
}

pub(super) const CPU_USAGE: Family = with(
    counter(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
    ),
    &["cpu"],
);
pub(super) const CPU_USER: Family = counter(
    "container_cpu_user_seconds_total",
    "Cumulative user cpu time consumed in seconds.",
);
pub(super) const CPU_SYSTEM: Family = counter(
    "container_cpu_system_seconds_total",
    "Cumulative system cpu time consumed in seconds.",
);
pub(super) const MEMORY_USAGE: Family = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
);
pub(super) const MEMORY_WORKING_SET: Family = gauge(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
);
pub(super) const MEMORY_RSS: Family = gauge("container_memory_rss", "Size of RSS in bytes.");
pub(super) const MEMORY_CACHE: Family = gauge(
    "container_memory_cache",
    "Number of bytes of page cache memory.",
);
pub(super) const MEMORY_FAILCNT: Family = counter(
    "container_memory_failcnt",
    "Number of memory usage hits limits.",
);
pub(super) const MEMORY_MAX_USAGE: Family = gauge(
    "container_memory_max_usage_bytes",
    "Maximum memory usage recorded in bytes.",
);
pub(super) const MEMORY_FAILURES: Family = with(
    counter(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
    ),
    &["failure_type", "scope"],
);
pub(super) const OOM_EVENTS: Family = counter(
    "container_oom_events_total",
    "Count of out of memory events observed for the container.",
);
pub(super) const SPEC_MEMORY_LIMIT: Family = gauge(
    "container_spec_memory_limit_bytes",
    "Memory limit for the container; 0 when unlimited.",
);
pub(super) const SPEC_CPU_QUOTA: Family = gauge(
    "container_spec_cpu_quota",
    "CPU quota of the container, in microseconds per period.",
);
pub(super) const SPEC_CPU_PERIOD: Family = gauge(
    "container_spec_cpu_period",
    "CPU period of the container, in microseconds.",
);
pub(super) const SPEC_CPU_SHARES: Family =
    gauge("container_spec_cpu_shares", "CPU share of the container.");
pub(super) const PROCESSES: Family = gauge(
    "container_processes",
    "Number of processes running inside the container.",
);
pub(super) const THREADS: Family = gauge(
    "container_threads",
    "Number of threads running inside the container.",
);
pub(super) const CFS_PERIODS: Family = counter(
    "container_cpu_cfs_periods_total",
    "Number of elapsed enforcement period intervals.",
);
pub(super) const CFS_THROTTLED_PERIODS: Family = counter(
    "container_cpu_cfs_throttled_periods_total",
    "Number of throttled period intervals.",
);
pub(super) const CFS_THROTTLED_SECONDS: Family = counter(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time duration the container has been throttled.",
);
pub(super) const MEMORY_KERNEL: Family = gauge(
    "container_memory_kernel_usage",
    "Size of kernel memory allocated in bytes.",
);
pub(super) const MEMORY_MAPPED_FILE: Family = gauge(
    "container_memory_mapped_file",
    "Size of memory mapped files in bytes.",
);
pub(super) const MEMORY_SWAP: Family =
    gauge("container_memory_swap", "Container swap usage in bytes.");
pub(super) const SPEC_MEMORY_SWAP_LIMIT: Family = gauge(
    "container_spec_memory_swap_limit_bytes",
    "Memory swap limit for the container; 0 when unlimited.",
);
pub(super) const THREADS_MAX: Family = gauge(
    "container_threads_max",
    "Maximum number of threads allowed inside the container; 0 when unlimited.",
);
pub(super) const FILE_DESCRIPTORS: Family = gauge(
    "container_file_descriptors",
    "Number of open file descriptors for the container.",
);
pub(super) const SOCKETS: Family = gauge(
    "container_sockets",
    "Number of open sockets for the container.",
);
pub(super) const FS_READS_BYTES: Family = with(
    counter(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read.",
    ),
    &["device"],
);
pub(super) const FS_READS: Family = with(
    counter(
        "container_fs_reads_total",
        "Cumulative count of reads completed.",
    ),
    &["device"],
);
pub(super) const FS_WRITES_BYTES: Family = with(
    counter(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written.",
    ),
    &["device"],
);
pub(super) const FS_WRITES: Family = with(
    counter(
        "container_fs_writes_total",
        "Cumulative count of writes completed.",
    ),
    &["device"],
);
pub(super) const BLKIO_DEVICE_USAGE: Family = with(
    counter(
        "container_blkio_device_usage_total",
        "Blkio device bytes usage.",
    ),
    &["device", "major", "minor", "operation"],
);
pub(super) const LAST_SEEN: Family = gauge(
    "container_last_seen",
    "Last time the container was seen by the runtime, in seconds since the epoch.",
);
pub(super) const START_TIME: Family = gauge(
    "container_start_time_seconds",
    "Start time of the container since unix epoch in seconds.",
);
pub(super) const FS_USAGE: Family = with(
    gauge(
        "container_fs_usage_bytes",
        "Number of bytes consumed by the container's writable layer.",
    ),
    &["device"],
);
pub(super) const FS_LIMIT: Family = with(
    gauge(
        "container_fs_limit_bytes",
        "Number of bytes the file system holding the container's writable layer can hold.",
    ),
    &["device"],
);
pub(super) const FS_INODES: Family = with(
    gauge(
        "container_fs_inodes_total",
        "Number of inodes of the file system holding the container's writable layer.",
    ),
    &["device"],
);
pub(super) const FS_INODES_FREE: Family = with(
    gauge(
        "container_fs_inodes_free",
        "Number of available inodes of the file system holding the container's writable layer.",
    ),
    &["device"],
);
pub(super) const NET_RX_BYTES: Family = with(
    counter(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
    ),
    &["interface"],
);
pub(super) const NET_RX_PACKETS: Family = with(
    counter(
        "container_network_receive_packets_total",
        "Cumulative count of packets received.",
    ),
    &["interface"],
);
pub(super) const NET_RX_ERRORS: Family = with(
    counter(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
    ),
    &["interface"],
);
pub(super) const NET_RX_DROPPED: Family = with(
    counter(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving.",
    ),
    &["interface"],
);
pub(super) const NET_TX_BYTES: Family = with(
    counter(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
    ),
    &["interface"],
);
pub(super) const NET_TX_PACKETS: Family = with(
    counter(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted.",
    ),
    &["interface"],
);
pub(super) const NET_TX_ERRORS: Family = with(
    counter(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
    ),
    &["interface"],
);
pub(super) const NET_TX_DROPPED: Family = with(
    counter(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting.",
    ),
    &["interface"],
);

/// Every family this module emits; ListMetricDescriptors describes exactly these.
pub const FAMILIES: &[&Family] = &[
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_CACHE,
    &MEMORY_FAILCNT,
    &MEMORY_MAX_USAGE,
    &MEMORY_FAILURES,
    &OOM_EVENTS,
    &SPEC_MEMORY_LIMIT,
    &SPEC_CPU_QUOTA,
    &SPEC_CPU_PERIOD,
    &SPEC_CPU_SHARES,
    &PROCESSES,
    &THREADS,
    &CFS_PERIODS,
    &CFS_THROTTLED_PERIODS,
    &CFS_THROTTLED_SECONDS,
    &MEMORY_KERNEL,
    &MEMORY_MAPPED_FILE,
    &MEMORY_SWAP,
    &SPEC_MEMORY_SWAP_LIMIT,
    &THREADS_MAX,
    &FILE_DESCRIPTORS,
    &SOCKETS,
    &FS_READS_BYTES,
    &FS_READS,
    &FS_WRITES_BYTES,
    &FS_WRITES,
    &BLKIO_DEVICE_USAGE,
    &LAST_SEEN,
    &START_TIME,
    &FS_USAGE,
    &FS_LIMIT,
    &FS_INODES,
    &FS_INODES_FREE,
    &NET_RX_BYTES,
    &NET_RX_PACKETS,
    &NET_RX_ERRORS,
    &NET_RX_DROPPED,
    &NET_TX_BYTES,
    &NET_TX_PACKETS,
    &NET_TX_ERRORS,
    &NET_TX_DROPPED,
];

pub fn descriptors() -> Vec<MetricDescriptor> {
    FAMILIES
        .iter()
        .map(|f| MetricDescriptor {
            name: f.name.to_string(),
            help: f.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(f.extra)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}
