//! systemd's D-Bus API on the system bus (zbus): transient scopes for containers and a
//! pod's infra process, transient slices for pods whose slice nobody made, and their
//! removal. Resources go in as unit properties, as runc, crun and CRI-O set them, so that
//! systemd, which rewrites a unit's cgroup files whenever it realizes the unit, keeps the
//! limits the runtime wrote.
//!
//! The runtime still writes the container's cgroup files at the scope's path (cgroupfs view
//! of the same directory); systemd adopts the container's init process into the scope
//! between create and start, before the workload runs.

use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use tokio::sync::Mutex;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
/// How long a unit may take to become active or to go away.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach systemd on the system bus: {0}")]
    Connect(zbus::Error),
    #[error("systemd {method} {unit}: {source}")]
    Call {
        method: &'static str,
        unit: String,
        source: zbus::Error,
    },
    #[error("systemd unit {unit} is {state} instead of active")]
    NotActive { unit: String, state: String },
    #[error("systemd unit {unit} did not become active within {WAIT:?} (last state {state})")]
    Timeout { unit: String, state: String },
}

type Property = (String, OwnedValue);

static CONNECTION: Mutex<Option<zbus::Connection>> = Mutex::const_new(None);

async fn connection() -> Result<zbus::Connection, SystemdError> {
    let mut cached = CONNECTION.lock().await;
    if let Some(c) = cached.as_ref() {
        return Ok(c.clone());
    }
    let c = zbus::Connection::system()
        .await
        .map_err(SystemdError::Connect)?;
    *cached = Some(c.clone());
    Ok(c)
}

/// Forgets the connection after a failed call, so the next call reconnects (the bus may
/// have restarted).
async fn forget() {
    *CONNECTION.lock().await = None;
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == NO_SUCH_UNIT)
}

async fn call<B>(method: &'static str, unit: &str, body: &B) -> Result<zbus::Message, SystemdError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let conn = connection().await?;
    let result = conn
        .call_method(Some(DEST), PATH, Some(MANAGER), method, body)
        .await;
    if let Err(e) = &result
        && !matches!(e, zbus::Error::MethodError(..))
    {
        forget().await;
    }
    result.map_err(|source| SystemdError::Call {
        method,
        unit: unit.to_string(),
        source,
    })
}

fn value(v: Value<'_>) -> OwnedValue {
    // Only plain values (numbers, strings, arrays of numbers) are built here, none of
    // which holds a file descriptor: conversion cannot fail.
    OwnedValue::try_from(v).expect("a value without file descriptors")
}

/// The unit's ActiveState, or None when systemd does not know the unit.
pub async fn active_state(unit: &str) -> Result<Option<String>, SystemdError> {
    let reply = match call("GetUnit", unit, &(unit,)).await {
        Ok(r) => r,
        Err(SystemdError::Call { source, .. }) if is_no_such_unit(&source) => return Ok(None),
        Err(e) => return Err(e),
    };
    let path: OwnedObjectPath =
        reply
            .body()
            .deserialize()
            .map_err(|source| SystemdError::Call {
                method: "GetUnit",
                unit: unit.to_string(),
                source,
            })?;
    let conn = connection().await?;
    let reply = conn
        .call_method(
            Some(DEST),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(UNIT, "ActiveState"),
        )
        .await;
    let reply = match reply {
        Ok(r) => r,
        // Garbage-collected between the two calls.
        Err(zbus::Error::MethodError(..)) => return Ok(None),
        Err(source) => {
            return Err(SystemdError::Call {
                method: "Get ActiveState",
                unit: unit.to_string(),
                source,
            });
        }
    };
    let state: OwnedValue = reply
        .body()
        .deserialize()
        .map_err(|source| SystemdError::Call {
            method: "Get ActiveState",
            unit: unit.to_string(),
            source,
        })?;
    Ok(String::try_from(state).ok())
}

/// Starts a transient unit (a `.scope` with `pids`, or a `.slice`) and waits until it is
/// active.
pub async fn start_transient(
    unit: &str,
    slice: Option<&str>,
    pids: &[u32],
    mut properties: Vec<Property>,
) -> Result<(), SystemdError> {
    properties.push((
        "Description".into(),
        value(Value::from(format!("criox {unit}"))),
    ));
    if let Some(slice) = slice {
        properties.push(("Slice".into(), value(Value::from(slice.to_string()))));
    }
    if unit.ends_with(".scope") {
        properties.push(("PIDs".into(), value(Value::from(pids.to_vec()))));
        // The runtime manages the cgroup below the scope, as with runc and crun.
        properties.push(("Delegate".into(), value(Value::from(true))));
        properties.push(("DefaultDependencies".into(), value(Value::from(false))));
    }
    let aux: Vec<(String, Vec<Property>)> = Vec::new();
    let reply = call(
        "StartTransientUnit",
        unit,
        &(unit, "fail", &properties, &aux),
    )
    .await?;
    let job: Option<OwnedObjectPath> = reply.body().deserialize().ok();
    let deadline = Instant::now() + WAIT;
    loop {
        // The unit is loaded, and inactive, until systemd has run the start job: only
        // the job's end makes a state other than active final.
        let job_done = match &job {
            Some(job) => !job_exists(job).await?,
            None => true,
        };
        let state = active_state(unit).await?;
        match state.as_deref() {
            Some("active") => return Ok(()),
            Some("failed") | Some("inactive") | None if job_done => {
                let state = state.unwrap_or_else(|| "gone".into());
                let _ = call("ResetFailedUnit", unit, &(unit,)).await;
                return Err(SystemdError::NotActive {
                    unit: unit.to_string(),
                    state,
                });
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(SystemdError::Timeout {
                unit: unit.to_string(),
                state: state.unwrap_or_else(|| "unknown".into()),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Changes a live unit's properties at runtime (not persisted), as `systemctl
/// set-property --runtime` does; systemd rewrites the unit's cgroup files to match.
pub async fn set_properties(unit: &str, properties: Vec<Property>) -> Result<(), SystemdError> {
    call("SetUnitProperties", unit, &(unit, true, &properties))
        .await
        .map(|_| ())
}

/// Whether systemd still has the job (it drops a job's object when the job ends).
async fn job_exists(job: &OwnedObjectPath) -> Result<bool, SystemdError> {
    let conn = connection().await?;
    match conn
        .call_method(
            Some(DEST),
            job.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.freedesktop.systemd1.Job", "State"),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(zbus::Error::MethodError(..)) => Ok(false),
        Err(source) => Err(SystemdError::Call {
            method: "Get Job.State",
            unit: job.to_string(),
            source,
        }),
    }
}

/// Stops a unit and waits until systemd has let it go; a unit systemd does not know is
/// already stopped.
pub async fn stop(unit: &str) -> Result<(), SystemdError> {
    match call("StopUnit", unit, &(unit, "replace")).await {
        Ok(_) => {}
        Err(SystemdError::Call { source, .. }) if is_no_such_unit(&source) => return Ok(()),
        Err(e) => return Err(e),
    }
    let deadline = Instant::now() + WAIT;
    loop {
        match active_state(unit).await?.as_deref() {
            None | Some("inactive") => return Ok(()),
            Some("failed") => {
                let _ = call("ResetFailedUnit", unit, &(unit,)).await;
                return Ok(());
            }
            Some(_) if Instant::now() > deadline => {
                return Err(SystemdError::Timeout {
                    unit: unit.to_string(),
                    state: "stopping".into(),
                });
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Sends `signal` to every process systemd counts in the unit; a unit systemd does not
/// know has none.
pub async fn kill(unit: &str, signal: i32) -> Result<(), SystemdError> {
    match call("KillUnit", unit, &(unit, "all", signal)).await {
        Err(SystemdError::Call { source, .. }) if is_no_such_unit(&source) => Ok(()),
        other => other.map(drop),
    }
}

/// Unit properties for OCI resources, named for the host's cgroup version: what runc sets
/// (memory, CPU shares or weight, quota and period, pids).
pub fn resource_properties(resources: Option<&LinuxResources>, cgroup_v2: bool) -> Vec<Property> {
    let mut props: Vec<Property> = Vec::new();
    let Some(r) = resources else {
        return props;
    };
    let mut put = |name: &str, v: u64| props.push((name.to_string(), value(Value::from(v))));
    if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit())
        && limit > 0
    {
        put(
            if cgroup_v2 {
                "MemoryMax"
            } else {
                "MemoryLimit"
            },
            limit as u64,
        );
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares()
            && shares > 0
        {
            if cgroup_v2 {
                put("CPUWeight", shares_to_weight(shares));
            } else {
                put("CPUShares", shares);
            }
        }
        let period = cpu.period().filter(|p| *p > 0).unwrap_or(100_000);
        if let Some(quota) = cpu.quota()
            && quota > 0
        {
            // systemd keeps whole percents: round up to 10 ms per second, as runc does.
            let mut per_sec = (quota as u64) * 1_000_000 / period;
            if !per_sec.is_multiple_of(10_000) {
                per_sec = (per_sec / 10_000 + 1) * 10_000;
            }
            put("CPUQuotaPerSecUSec", per_sec);
            put("CPUQuotaPeriodUSec", period);
        }
    }
    if let Some(pids) = r.pids()
        && pids.limit() > 0
    {
        put("TasksMax", pids.limit() as u64);
    }
    props
}

/// runc's conversion of CPU shares (2..262144) to a cgroup v2 weight (1..10000).
fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// Unit properties for a pod's own limits (its slice).
pub fn pod_properties(
    memory: i64,
    shares: i64,
    quota: i64,
    period: i64,
    v2: bool,
) -> Vec<Property> {
    let mut builder = oci_spec::runtime::LinuxResourcesBuilder::default();
    let mut cpu = oci_spec::runtime::LinuxCpuBuilder::default();
    if shares > 0 {
        cpu = cpu.shares(shares as u64);
    }
    if quota > 0 {
        cpu = cpu.quota(quota);
    }
    if period > 0 {
        cpu = cpu.period(period as u64);
    }
    if let Ok(cpu) = cpu.build() {
        builder = builder.cpu(cpu);
    }
    if memory > 0
        && let Ok(m) = oci_spec::runtime::LinuxMemoryBuilder::default()
            .limit(memory)
            .build()
    {
        builder = builder.memory(m);
    }
    resource_properties(builder.build().ok().as_ref(), v2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(props: &[Property], name: &str) -> Option<u64> {
        props
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| u64::try_from(v.try_clone().unwrap()).ok())
    }

    #[test]
    fn resources_become_runc_properties() {
        let v1 = pod_properties(64 << 20, 512, 50_000, 100_000, false);
        assert_eq!(get(&v1, "MemoryLimit"), Some(64 << 20));
        assert_eq!(get(&v1, "CPUShares"), Some(512));
        assert_eq!(get(&v1, "CPUQuotaPerSecUSec"), Some(500_000));
        assert_eq!(get(&v1, "CPUQuotaPeriodUSec"), Some(100_000));
        let v2 = pod_properties(64 << 20, 1024, 33_333, 100_000, true);
        assert_eq!(get(&v2, "MemoryMax"), Some(64 << 20));
        assert_eq!(get(&v2, "CPUWeight"), Some(39));
        // 333330 µs per second rounds up to whole 10 ms.
        assert_eq!(get(&v2, "CPUQuotaPerSecUSec"), Some(340_000));
        assert!(pod_properties(0, 0, 0, 0, false).is_empty());
    }
}
