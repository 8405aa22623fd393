//! Statistics and metrics of containers and pods.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use criox_proto::v1::*;
use tonic::Status;

use super::CriServer;
use super::grpc_errors::task_failed;
use crate::container::manager::now_ns;
use crate::container::record::{ContainerRecord, Filter, State};
use crate::sandbox::{Pod, PodFilter, PodState};
use crate::stats::cgroup::Hierarchy;
use crate::stats::{disk, network, psi};

/// Runs `read` off the async workers: the cgroup, /proc and disk reads behind the figures
/// block. `what` names the work if its task fails.
async fn blocking<T: Send + 'static>(
    server: &CriServer,
    what: &'static str,
    read: impl FnOnce(&CriServer) -> T + Send + 'static,
) -> Result<T, Status> {
    let server = server.clone();
    tokio::task::spawn_blocking(move || read(&server))
        .await
        .map_err(|e| task_failed(what, e))
}

/// CPU, memory and IO pressure of one cgroup, with the CPU rate since the previous sample
/// under `key`. A cgroup that is gone (its container just exited) gives nothing.
fn cgroup_usage(server: &CriServer, key: &str, cgroup: &str) -> Usage {
    if cgroup.is_empty() {
        return Usage::default();
    }
    let now = Instant::now();
    let timestamp = now_ns();
    let stats = match Hierarchy::host().read(Path::new(cgroup)) {
        Ok(stats) => stats,
        Err(e) => {
            if !e.is_gone() {
                tracing::warn!(%key, %cgroup, error = %e, "cannot read cgroup statistics");
            }
            return Usage::default();
        }
    };
    let rate = server.cpu_rate.sample(key, now, stats.cpu_usage_ns);
    let pressure = psi::read(Path::new(cgroup));
    let m = &stats.memory;
    let value = |value| Some(UInt64Value { value });
    let cpu = CpuUsage {
        timestamp,
        usage_core_nano_seconds: value(stats.cpu_usage_ns),
        usage_nano_cores: rate.and_then(value),
        psi: pressure.cpu.map(psi_stats),
    };
    let memory = MemoryUsage {
        timestamp,
        working_set_bytes: value(m.working_set_bytes),
        available_bytes: m.available_bytes().and_then(value),
        usage_bytes: value(m.usage_bytes),
        rss_bytes: value(m.rss_bytes),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        psi: pressure.memory.map(psi_stats),
    };
    let io = pressure.io.map(|p| IoUsage {
        timestamp,
        psi: Some(psi_stats(p)),
    });
    Usage {
        cpu: Some(cpu),
        memory: Some(memory),
        io,
        processes: stats.processes,
    }
}

/// What one cgroup's files say; each part absent where it cannot be read.
#[derive(Default)]
struct Usage {
    cpu: Option<CpuUsage>,
    memory: Option<MemoryUsage>,
    io: Option<IoUsage>,
    processes: Option<u64>,
}

fn psi_stats(p: psi::Pressure) -> PsiStats {
    let data = |l: psi::PsiLine| PsiData {
        total: l.total_ns,
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    PsiStats {
        full: p.full.map(data),
        some: p.some.map(data),
    }
}

/// One container's figures: CPU and memory from its cgroup, and its writable layer.
fn container_stats_of(server: &CriServer, record: &ContainerRecord) -> ContainerStats {
    let timestamp = now_ns();
    // An exited container's cgroup, until removal, only holds what its last run left.
    let usage = if record.state == State::Exited {
        Usage::default()
    } else {
        cgroup_usage(server, &record.id, &record.cgroup)
    };
    let upper = server.containers.writable_layer(&record.id);
    let writable_layer = disk::usage(&upper).ok().map(|usage| FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: upper.display().to_string(),
        }),
        used_bytes: Some(UInt64Value { value: usage.bytes }),
        inodes_used: Some(UInt64Value {
            value: usage.inodes,
        }),
    });
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: record.id.clone(),
            metadata: Some(ContainerMetadata {
                name: record.name.clone(),
                attempt: record.attempt,
            }),
            labels: record.labels.clone(),
            annotations: record.annotations.clone(),
        }),
        cpu: usage.cpu,
        memory: usage.memory,
        writable_layer,
        swap: None,
        io: usage.io,
    }
}

/// Drops the CPU-rate samples of containers and pods that no longer exist. Run on each
/// list call, which kubelet makes periodically, so the cache tracks what exists.
async fn prune_cpu_rate(server: &CriServer) {
    let mut known: HashSet<String> = server
        .containers
        .list(&Filter::default())
        .into_iter()
        .map(|r| r.id)
        .collect();
    known.extend(
        server
            .pods
            .list(&PodFilter::default())
            .await
            .into_iter()
            .map(|p| p.id),
    );
    server.cpu_rate.retain_known(|id| known.contains(id));
}

pub async fn container_stats(
    server: &CriServer,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    let record = server.containers.get(&req.container_id)?;
    let stats = blocking(server, "statistics", move |s| {
        container_stats_of(s, &record)
    })
    .await?;
    Ok(ContainerStatsResponse { stats: Some(stats) })
}

pub async fn list_container_stats(
    server: &CriServer,
    req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Status> {
    prune_cpu_rate(server).await;
    let filter = match req.filter {
        Some(f) => Filter {
            id: (!f.id.is_empty()).then_some(f.id),
            pod_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
            state: None,
            labels: f.label_selector,
        },
        None => Filter::default(),
    };
    let records: Vec<ContainerRecord> = server
        .containers
        .list(&filter)
        .into_iter()
        .filter(|r| r.state == State::Running || r.state == State::Created)
        .collect();
    let stats = blocking(server, "statistics", move |s| {
        records.iter().map(|r| container_stats_of(s, r)).collect()
    })
    .await?;
    Ok(ListContainerStatsResponse { stats })
}

/// A pod's figures: its cgroup, its network namespace's interfaces, and its containers.
fn pod_stats_of(server: &CriServer, pod: &Pod, containers: &[ContainerRecord]) -> PodSandboxStats {
    let timestamp = now_ns();
    let usage = cgroup_usage(server, &pod.id, pod.cgroup_parent());
    let network =
        pod.paths
            .namespaces
            .network
            .as_ref()
            .and_then(|netns| match network::read(netns) {
                Ok(interfaces) => {
                    let interfaces: Vec<NetworkInterfaceUsage> = interfaces
                        .into_iter()
                        .map(|i| NetworkInterfaceUsage {
                            name: i.name,
                            rx_bytes: Some(UInt64Value { value: i.rx_bytes }),
                            rx_errors: Some(UInt64Value { value: i.rx_errors }),
                            tx_bytes: Some(UInt64Value { value: i.tx_bytes }),
                            tx_errors: Some(UInt64Value { value: i.tx_errors }),
                        })
                        .collect();
                    let default_interface = interfaces
                        .iter()
                        .find(|i| i.name == "eth0")
                        .or(interfaces.first())
                        .cloned();
                    Some(NetworkUsage {
                        timestamp,
                        default_interface,
                        interfaces,
                    })
                }
                Err(e) => {
                    if !e.is_gone() {
                        tracing::warn!(pod = %pod.id, error = %e, "cannot read network statistics");
                    }
                    None
                }
            });
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: Some(super::pods::metadata(pod)),
            labels: pod.spec.labels.clone().into_iter().collect(),
            annotations: pod.spec.annotations.clone().into_iter().collect(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: usage.cpu,
            memory: usage.memory,
            network,
            process: usage.processes.map(|value| ProcessUsage {
                timestamp,
                process_count: Some(UInt64Value { value }),
            }),
            containers: containers
                .iter()
                .filter(|c| {
                    c.pod_id == pod.id && matches!(c.state, State::Created | State::Running)
                })
                .map(|c| container_stats_of(server, c))
                .collect(),
            io: usage.io,
        }),
        windows: None,
    }
}

pub async fn pod_sandbox_stats(
    server: &CriServer,
    req: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Status> {
    let pod = server.pods.get(&req.pod_sandbox_id).await?;
    let containers = server.containers.list(&Filter::default());
    let stats = blocking(server, "statistics", move |s| {
        pod_stats_of(s, &pod, &containers)
    })
    .await?;
    Ok(PodSandboxStatsResponse { stats: Some(stats) })
}

pub async fn list_pod_sandbox_stats(
    server: &CriServer,
    req: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Status> {
    prune_cpu_rate(server).await;
    let filter = req.filter.unwrap_or_default();
    let pods: Vec<Pod> = server
        .pods
        .list(&PodFilter {
            id: filter.id,
            state: Some(PodState::Ready),
            labels: filter.label_selector.into_iter().collect(),
        })
        .await;
    let containers = server.containers.list(&Filter::default());
    let stats = blocking(server, "statistics", move |s| {
        pods.iter()
            .map(|pod| pod_stats_of(s, pod, &containers))
            .collect()
    })
    .await?;
    Ok(ListPodSandboxStatsResponse { stats })
}

pub async fn list_metric_descriptors(
    _server: &CriServer,
    _req: ListMetricDescriptorsRequest,
) -> Result<ListMetricDescriptorsResponse, Status> {
    Ok(ListMetricDescriptorsResponse {
        descriptors: super::pod_metrics::descriptors(),
    })
}

/// Metrics of ready pods only: a stopped or removed pod has nothing to report and is
/// left out rather than failing the call.
pub async fn list_pod_sandbox_metrics(
    server: &CriServer,
    _req: ListPodSandboxMetricsRequest,
) -> Result<ListPodSandboxMetricsResponse, Status> {
    let pods: Vec<Pod> = server
        .pods
        .list(&PodFilter {
            state: Some(PodState::Ready),
            ..Default::default()
        })
        .await;
    let containers = server.containers.list(&Filter::default());
    let pod_metrics = blocking(server, "metrics", move |s| {
        pods.iter()
            .map(|pod| super::pod_metrics::pod_metrics(s, pod, &containers))
            .collect()
    })
    .await?;
    Ok(ListPodSandboxMetricsResponse { pod_metrics })
}
