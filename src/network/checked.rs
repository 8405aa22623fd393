//! What a verbose PodSandboxStatus says about a pod's network: the outcome of the last
//! CNI CHECK, not a CHECK per call. A CHECK runs every plugin of the list (16.7 ms for
//! bridge + portmap here) while the status itself takes well under a millisecond, and
//! containerd runs none on status. A successful ADD counts as a passed check; an outcome
//! older than [`REFRESH_AFTER`] is answered as it is and refreshed by a CHECK in the
//! background, one at a time per pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::NetworkManager;

/// How long a check outcome is reported without a new CHECK behind it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Checks {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    at: Instant,
    /// None until the first CHECK of a pod attached before a restart has finished.
    outcome: Option<Result<(), String>>,
    running: bool,
}

impl Checks {
    /// Records an outcome observed now (a successful ADD, a finished CHECK).
    pub fn record(&self, id: &str, outcome: Result<(), String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            id.to_string(),
            Entry {
                at: Instant::now(),
                outcome: Some(outcome),
                running: false,
            },
        );
    }

    /// Records a background CHECK's outcome, unless the pod was detached meanwhile.
    fn finish(&self, id: &str, outcome: Result<(), String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(id) {
            *entry = Entry {
                at: Instant::now(),
                outcome: Some(outcome),
                running: false,
            };
        }
    }

    /// Forgets a pod whose attachment is gone.
    pub fn forget(&self, id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(id);
    }

    /// The last outcome, and whether the caller should start a CHECK (marking it running).
    fn last(&self, id: &str, now: Instant) -> (Option<Result<(), String>>, bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(id.to_string()).or_insert(Entry {
            at: now,
            outcome: None,
            running: false,
        });
        let stale = entry.outcome.is_none() || now.duration_since(entry.at) >= REFRESH_AFTER;
        let start = stale && !entry.running;
        if start {
            entry.running = true;
        }
        (entry.outcome.clone(), start)
    }
}

impl NetworkManager {
    /// The last CHECK outcome of the pod's attachment, starting a CHECK in the background
    /// when it is stale or missing.
    pub fn last_check(self: &Arc<Self>, id: &str) -> Result<(), String> {
        let (outcome, start) = self.checks.last(id, Instant::now());
        if start {
            let this = Arc::clone(self);
            let id = id.to_string();
            tokio::spawn(async move {
                let outcome = this.check(&id).await.map_err(|e| e.to_string());
                this.checks.finish(&id, outcome);
            });
        }
        outcome.unwrap_or_else(|| Err("not checked yet; a CNI CHECK is running".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_outcome_is_reused_until_it_is_stale() {
        let checks = Checks::default();
        let now = Instant::now();
        assert_eq!(checks.last("p", now), (None, true), "unknown: check now");
        assert_eq!(checks.last("p", now), (None, false), "one check at a time");
        checks.record("p", Ok(()));
        let at = Instant::now();
        assert_eq!(checks.last("p", at), (Some(Ok(())), false));
        let later = at + REFRESH_AFTER;
        assert_eq!(checks.last("p", later), (Some(Ok(())), true), "stale");
        assert_eq!(checks.last("p", later), (Some(Ok(())), false));
        checks.forget("p");
        checks.finish("p", Err("late".to_string()));
        assert_eq!(
            checks.last("p", later),
            (None, true),
            "a late outcome is dropped"
        );
    }
}
