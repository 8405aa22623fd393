//! Where an RPC's time goes: each phase of a pod or container verb (validation, namespaces,
//! CNI ADD, cgroup, root filesystem, spec, monitor…) is a debug-level span of target
//! `criox::timeline` and ends with a debug event carrying its duration in microseconds,
//! inside the RPC's own span. With
//! `log_level = "warn,criox::server::edge=info,criox::timeline=debug"` the log shows them
//! within their RPC's span (the edge module names the RPC at info level);
//! `hack/bench/breakdown` turns them into medians per phase.
//!
//! When the target is not enabled a phase costs a clock read and an atomic load.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

pub const TARGET: &str = "criox::timeline";

/// A phase that ends when the value is dropped; for blocking code, where a span cannot be
/// held across an await anyway.
#[must_use = "the phase ends when this is dropped"]
pub struct Phase {
    name: &'static str,
    started: Instant,
    span: tracing::Span,
}

/// Starts timing the phase `name`.
pub fn phase(name: &'static str) -> Phase {
    Phase {
        name,
        started: Instant::now(),
        span: tracing::debug_span!(target: TARGET, "phase", name),
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let us = self.started.elapsed().as_micros() as u64;
        let _inside = self.span.enter();
        tracing::debug!(target: TARGET, phase = self.name, us, "phase done");
    }
}

/// Runs `work` as the phase `name`, its span entered while it is polled.
pub async fn timed<F: Future>(name: &'static str, work: F) -> F::Output {
    let started = Instant::now();
    let span = tracing::debug_span!(target: TARGET, "phase", name);
    let out = work.instrument(span.clone()).await;
    let us = started.elapsed().as_micros() as u64;
    let _inside = span.enter();
    tracing::debug!(target: TARGET, phase = name, us, "phase done");
    out
}
