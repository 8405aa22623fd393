//! usage_nano_cores: the CPU rate between two samples of cumulative usage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The previous sample of each cgroup, keyed by the caller's id (container or pod).
#[derive(Default)]
pub struct CpuRate {
    previous: Mutex<HashMap<String, (Instant, u64)>>,
}

impl CpuRate {
    /// Records `usage_ns` taken at `at` and returns the rate since the previous sample of
    /// `id` in nanoseconds of CPU per second (1e9 = one full core), or `None` for the first
    /// sample.
    pub fn sample(&self, id: &str, at: Instant, usage_ns: u64) -> Option<u64> {
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let rate = previous.get(id).and_then(|&(then, before)| {
            let elapsed = at.checked_duration_since(then)?.as_nanos();
            if elapsed == 0 || usage_ns < before {
                return None;
            }
            let used = u128::from(usage_ns - before);
            u64::try_from(used * 1_000_000_000 / elapsed).ok()
        });
        previous.insert(id.to_string(), (at, usage_ns));
        rate
    }

    /// Forgets `id`, for a removed container or pod.
    pub fn forget(&self, id: &str) {
        self.previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Forgets every id `known` rejects: containers and pods removed by any path
    /// (removal of their pod, garbage collection, a restart) would otherwise keep a
    /// sample each for the daemon's lifetime.
    pub fn retain_known(&self, known: impl Fn(&str) -> bool) {
        self.previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| known(id));
    }

    /// How many ids have a previous sample.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_is_usage_over_elapsed_time() {
        let rate = CpuRate::default();
        let t0 = Instant::now();
        assert_eq!(rate.sample("c", t0, 1_000), None);
        // Half a core for two seconds.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            rate.sample("c", t1, 1_000 + 1_000_000_000),
            Some(500_000_000)
        );
        // A counter that went backwards (a new cgroup under the same id) restarts.
        assert_eq!(rate.sample("c", t1 + Duration::from_secs(1), 10), None);
        rate.forget("c");
        assert_eq!(rate.sample("c", t1 + Duration::from_secs(2), 20), None);
    }

    #[test]
    fn ids_no_longer_known_are_forgotten() {
        let rate = CpuRate::default();
        let t0 = Instant::now();
        for id in ["running", "removed-container", "removed-pod"] {
            rate.sample(id, t0, 1_000);
        }
        rate.retain_known(|id| id == "running");
        println!("samples kept after pruning: {}", rate.len());
        assert_eq!(rate.len(), 1);
        // The kept id still has its previous sample; a removed id starts over.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            rate.sample("running", t1, 1_000 + 250_000_000),
            Some(250_000_000)
        );
        assert_eq!(rate.sample("removed-pod", t1, 2_000), None);
    }
}
