//! Prometheus metrics of the daemon: RPC counts and latencies, image pulls, pods and
//! containers by state, monitors, OOM kills, and the daemon's own memory. Served as text on
//! `metrics.address:metrics.port` when enabled.

mod http;
mod rpc_layer;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use http::serve;
pub use rpc_layer::rpc_metrics_layer;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// How many pods and containers are in each state, counted when metrics are scraped.
#[derive(Debug, Default, Clone)]
pub struct Population {
    pub pods: Vec<(&'static str, i64)>,
    pub containers: Vec<(&'static str, i64)>,
    pub monitors: i64,
}

type PopulationSource = Box<dyn Fn() -> Population + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Family<MethodLabels, Histogram>,
    image_pulls: Family<ResultLabels, Counter>,
    image_pull_bytes: Counter,
    oom_kills: Counter,
    pods: Family<StateLabels, Gauge>,
    containers: Family<StateLabels, Gauge>,
    monitors: Gauge,
    resident_bytes: Gauge,
    population: Mutex<Option<PopulationSource>>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("criox");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_seconds = Family::<MethodLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let image_pulls = Family::<ResultLabels, Counter>::default();
        let image_pull_bytes = Counter::default();
        let oom_kills = Counter::default();
        let pods = Family::<StateLabels, Gauge>::default();
        let containers = Family::<StateLabels, Gauge>::default();
        let monitors = Gauge::default();
        let resident_bytes = Gauge::default();
        registry.register(
            "grpc_requests",
            "CRI calls answered, by method and gRPC status code",
            rpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time to answer a CRI call, by method",
            rpc_seconds.clone(),
        );
        registry.register("image_pulls", "Image pulls, by result", image_pulls.clone());
        registry.register(
            "image_pull_bytes",
            "Bytes of the images pulled, as the registry serves them",
            image_pull_bytes.clone(),
        );
        registry.register(
            "oom_kills",
            "Containers killed for running out of memory",
            oom_kills.clone(),
        );
        registry.register("pods", "Pod sandboxes, by state", pods.clone());
        registry.register("containers", "Containers, by state", containers.clone());
        registry.register(
            "monitors",
            "Live per-container monitor processes",
            monitors.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident memory of the daemon process",
            resident_bytes.clone(),
        );
        Arc::new(Metrics {
            registry,
            rpc_requests,
            rpc_seconds,
            image_pulls,
            image_pull_bytes,
            oom_kills,
            pods,
            containers,
            monitors,
            resident_bytes,
            population: Mutex::new(None),
        })
    }

    pub fn observe_rpc(&self, method: &str, code: &str, seconds: f64) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                method: method.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.rpc_seconds
            .get_or_create(&MethodLabels {
                method: method.to_string(),
            })
            .observe(seconds);
    }

    pub fn image_pulled(&self, ok: bool, bytes: u64) {
        let result = if ok { "success" } else { "failure" };
        self.image_pulls
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        self.image_pull_bytes.inc_by(bytes);
    }

    pub fn oom_killed(&self) {
        self.oom_kills.inc();
    }

    /// Installs the function that counts pods, containers and monitors at scrape time.
    pub fn set_population_source(&self, source: PopulationSource) {
        *self.population.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// The exposition text, with the gauges refreshed.
    pub fn render(&self) -> String {
        if let Some(source) = self
            .population
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let population = source();
            set_states(&self.pods, &population.pods);
            set_states(&self.containers, &population.containers);
            self.monitors.set(population.monitors);
        }
        self.resident_bytes.set(resident_bytes());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn set_states(family: &Family<StateLabels, Gauge>, counts: &[(&'static str, i64)]) {
    for (state, count) in counts {
        family
            .get_or_create(&StateLabels {
                state: (*state).to_string(),
            })
            .set(*count);
    }
}

/// Resident set size from /proc/self/statm (second field, in pages).
fn resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page_size.max(1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_holds_every_family_and_moves() {
        let metrics = Metrics::new();
        metrics.observe_rpc("Version", "OK", 0.001);
        metrics.observe_rpc("Version", "OK", 0.002);
        metrics.observe_rpc("RunPodSandbox", "InvalidArgument", 0.01);
        metrics.image_pulled(true, 1234);
        metrics.set_population_source(Box::new(|| Population {
            pods: vec![("ready", 2), ("notready", 1)],
            containers: vec![("running", 3)],
            monitors: 3,
        }));
        let text = metrics.render();
        assert!(
            text.contains("criox_grpc_requests_total{method=\"Version\",code=\"OK\"} 2"),
            "{text}"
        );
        assert!(text.contains("criox_grpc_request_duration_seconds_count{method=\"Version\"} 2"));
        assert!(text.contains("criox_image_pull_bytes_total 1234"));
        assert!(text.contains("criox_pods{state=\"ready\"} 2"));
        assert!(text.contains("criox_containers{state=\"running\"} 3"));
        assert!(text.contains("criox_monitors 3"));
        let rss_line = text
            .lines()
            .find(|l| l.starts_with("criox_resident_memory_bytes "))
            .unwrap();
        let rss: i64 = rss_line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(rss > 0);
    }
}
