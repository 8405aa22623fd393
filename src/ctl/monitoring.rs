//! Monitoring commands: stats, statsp, metricdescs, metricsp, events.

use anyhow::Result;
use clap::Args;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::{
    ContainerEventType, ContainerStatsFilter, CpuUsage, GetEventsRequest, IoUsage,
    ListContainerStatsRequest, ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest,
    ListPodSandboxStatsRequest, MemoryUsage, PodSandboxStatsFilter, PsiData, PsiStats, UInt64Value,
};
use tonic::transport::Channel;

use super::table::{Table, print_json, short};

type Client = RuntimeServiceClient<Channel>;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this container (id or prefix).
    #[arg(long)]
    pub id: Option<String>,
    /// Only containers of this pod.
    #[arg(long, short = 'p')]
    pub pod: Option<String>,
    /// Print the figures as JSON.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatspArgs {
    /// Only this pod (id or prefix).
    #[arg(long)]
    pub id: Option<String>,
    /// Print the figures as JSON.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

fn cpu_percent(nano_cores: Option<&UInt64Value>) -> String {
    match nano_cores {
        Some(v) => format!("{:.2}", v.value as f64 / 1e7),
        None => "-".to_string(),
    }
}

/// Pressure as `some/full` ten-second averages in percent; `-` where the runtime has none
/// (cgroup v1) and for a `full` line the kernel does not report.
fn psi(p: Option<&PsiStats>) -> String {
    let Some(p) = p else {
        return "-".to_string();
    };
    let avg = |d: Option<&PsiData>| d.map_or("-".to_string(), |d| format!("{:.2}", d.avg10));
    format!("{}/{}", avg(p.some.as_ref()), avg(p.full.as_ref()))
}

fn mib(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A row of the stats tables: id and name, CPU and memory, the table's own byte counts,
/// then the pressure of CPU, memory and IO.
fn stats_row(
    id: &str,
    name: String,
    cpu: Option<CpuUsage>,
    memory: Option<MemoryUsage>,
    io: Option<IoUsage>,
    counts: &[u64],
) -> Vec<String> {
    let mut row = vec![
        short(id).to_string(),
        name,
        cpu_percent(cpu.as_ref().and_then(|c| c.usage_nano_cores.as_ref())),
        mib(memory.as_ref().map_or(0, |m| value(&m.working_set_bytes))),
    ];
    row.extend(counts.iter().map(|&bytes| mib(bytes)));
    row.extend([
        psi(cpu.as_ref().and_then(|c| c.psi.as_ref())),
        psi(memory.as_ref().and_then(|m| m.psi.as_ref())),
        psi(io.as_ref().and_then(|i| i.psi.as_ref())),
    ]);
    row
}

/// Prints `stats` as JSON with `-o json`, else as a table: `columns`, then the pressure
/// columns [`stats_row`] ends with.
fn print_stats<T: serde::Serialize>(
    stats: Vec<T>,
    output: Option<String>,
    columns: &[&str],
    row: impl Fn(T) -> Vec<String>,
) -> Result<()> {
    if output.as_deref() == Some("json") {
        return print_json("stats", stats);
    }
    let pressure: &[&str] = &["CPU PSI", "MEM PSI", "IO PSI"];
    let mut table = Table::new(&[columns, pressure].concat());
    for s in stats {
        table.row(row(s));
    }
    table.print();
    Ok(())
}

pub async fn stats(rt: &mut Client, args: StatsArgs) -> Result<()> {
    let stats = rt
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                id: args.id.unwrap_or_default(),
                pod_sandbox_id: args.pod.unwrap_or_default(),
                label_selector: Default::default(),
            }),
        })
        .await?
        .into_inner()
        .stats;
    let columns = ["CONTAINER", "NAME", "CPU %", "MEM", "DISK"];
    print_stats(stats, args.output, &columns, |s| {
        let attributes = s.attributes.unwrap_or_default();
        let name = attributes.metadata.map(|m| m.name).unwrap_or_default();
        let disk = s.writable_layer.map(|w| value(&w.used_bytes)).unwrap_or(0);
        stats_row(&attributes.id, name, s.cpu, s.memory, s.io, &[disk])
    })
}

pub async fn statsp(rt: &mut Client, args: StatspArgs) -> Result<()> {
    let stats = rt
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: args.id.unwrap_or_default(),
                label_selector: Default::default(),
            }),
        })
        .await?
        .into_inner()
        .stats;
    let columns = ["POD", "NAME", "CPU %", "MEM", "RX", "TX"];
    print_stats(stats, args.output, &columns, |s| {
        let attributes = s.attributes.unwrap_or_default();
        let name = attributes.metadata.map(|m| m.name).unwrap_or_default();
        let linux = s.linux.unwrap_or_default();
        let eth = linux.network.and_then(|n| n.default_interface);
        let (rx, tx) = eth
            .map(|i| (value(&i.rx_bytes), value(&i.tx_bytes)))
            .unwrap_or((0, 0));
        stats_row(
            &attributes.id,
            name,
            linux.cpu,
            linux.memory,
            linux.io,
            &[rx, tx],
        )
    })
}

/// Prints the metric descriptors as JSON.
pub async fn metricdescs(rt: &mut Client) -> Result<()> {
    let descriptors = rt
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await?
        .into_inner()
        .descriptors;
    print_json("descriptors", descriptors)
}

/// Prints the metrics of pods as JSON; `ids` (or prefixes) narrow them to some pods.
pub async fn metricsp(rt: &mut Client, ids: Vec<String>) -> Result<()> {
    let mut pod_metrics = rt
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await?
        .into_inner()
        .pod_metrics;
    if !ids.is_empty() {
        pod_metrics.retain(|p| {
            ids.iter()
                .any(|id| p.pod_sandbox_id.starts_with(id.as_str()))
        });
    }
    print_json("podMetrics", pod_metrics)
}

/// Prints container events as they happen, one JSON object a line, until interrupted.
pub async fn events(rt: &mut Client) -> Result<()> {
    let mut stream = rt
        .get_container_events(GetEventsRequest {})
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        let kind = ContainerEventType::try_from(event.container_event_type)
            .map(|k| k.as_str_name().to_string())
            .unwrap_or_else(|_| event.container_event_type.to_string());
        let line = serde_json::json!({
            "containerId": event.container_id,
            "type": kind,
            "createdAt": event.created_at,
            "podSandboxId": event.pod_sandbox_status.map(|p| p.id).unwrap_or_default(),
        });
        println!("{line}");
    }
    Ok(())
}
