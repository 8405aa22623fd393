//! What the daemon remembers of each container across restarts.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::Record;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being made: the record exists so a crash can be cleaned up, the container may not.
    #[default]
    Creating,
    Created,
    Running,
    Exited,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Running => "running",
            State::Exited => "exited",
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: i32,
    /// Nanoseconds since the epoch.
    pub finished_at: i64,
    pub oom_killed: bool,
    /// Set when the daemon could not learn the real end: the monitor, which waits for
    /// the exit code, was lost before it could record one.
    pub unknown: bool,
}

impl Exit {
    /// The CRI reason the kubelet shows.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.unknown {
            "MonitorLost"
        } else if self.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// A bind mount as the container sees it, kept for ContainerStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// 0 private, 1 host-to-container (rslave), 2 bidirectional (rshared), as CRI numbers them.
    pub propagation: i32,
    /// For an image volume: the image as the request named it, and its id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
}

/// The default is a record of nothing yet made or run: no process, cgroup or exit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    /// CRI metadata name and attempt.
    pub name: String,
    pub attempt: u32,
    /// Unique among live containers: the name, pod name, namespace, uid and attempt.
    pub full_name: String,
    /// The image as the user named it, and the image id it resolved to.
    pub image: String,
    pub image_id: String,
    /// A digest reference of the image (repo@sha256:…), for ContainerStatus.image_ref.
    pub image_ref: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub mounts: Vec<MountRecord>,
    /// The CRI log file (pod log directory + container log path), if any.
    pub log_path: Option<PathBuf>,
    /// The runtime handler the pod chose.
    pub handler: String,
    /// The container's cgroup, relative to the hierarchy root.
    pub cgroup: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Signal for StopContainer, from the image's StopSignal.
    pub stop_signal: i32,
    pub state: State,
    pub created_at: i64,
    pub started_at: i64,
    pub pid: i32,
    /// The init's start time: with `pid` it names the init process for good, so that it
    /// can be checked and signalled when the monitor is lost. Records written before this
    /// field existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    pub monitor_pid: i32,
    /// The monitor is gone while the init still runs: the container goes on without log,
    /// attach or exit code, and stopping it signals the init.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub monitor_lost: bool,
    pub exit: Option<Exit>,
    /// The CRI resources asked for at creation and by later updates; records written
    /// before this field existed have none.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// The identity the first process runs with, for ContainerStatus.user; records
    /// written before this field existed have none.
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    /// Every group of the process, the primary one included.
    pub groups: Vec<u32>,
}

/// The CRI's Linux resources, as ContainerStatus reports them back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub unified: HashMap<String, String>,
}

impl Resources {
    pub fn from_cri(r: &criox_proto::v1::LinuxContainerResources) -> Resources {
        Resources {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory_limit_in_bytes: r.memory_limit_in_bytes,
            memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
            oom_score_adj: r.oom_score_adj,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            unified: r.unified.clone(),
        }
    }

    /// An update as the runtimes apply it: the values it sets replace the old ones, the
    /// values it leaves at zero or empty keep theirs.
    pub fn updated(&self, r: &criox_proto::v1::LinuxContainerResources) -> Resources {
        let pick = |new: i64, old: i64| if new != 0 { new } else { old };
        let pick_str = |new: &str, old: &str| if new.is_empty() { old } else { new }.to_string();
        let mut unified = self.unified.clone();
        unified.extend(r.unified.clone());
        Resources {
            cpu_period: pick(r.cpu_period, self.cpu_period),
            cpu_quota: pick(r.cpu_quota, self.cpu_quota),
            cpu_shares: pick(r.cpu_shares, self.cpu_shares),
            memory_limit_in_bytes: pick(r.memory_limit_in_bytes, self.memory_limit_in_bytes),
            memory_swap_limit_in_bytes: pick(
                r.memory_swap_limit_in_bytes,
                self.memory_swap_limit_in_bytes,
            ),
            oom_score_adj: pick(r.oom_score_adj, self.oom_score_adj),
            cpuset_cpus: pick_str(&r.cpuset_cpus, &self.cpuset_cpus),
            cpuset_mems: pick_str(&r.cpuset_mems, &self.cpuset_mems),
            unified,
        }
    }

    pub fn to_cri(&self) -> criox_proto::v1::LinuxContainerResources {
        criox_proto::v1::LinuxContainerResources {
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_shares: self.cpu_shares,
            memory_limit_in_bytes: self.memory_limit_in_bytes,
            memory_swap_limit_in_bytes: self.memory_swap_limit_in_bytes,
            oom_score_adj: self.oom_score_adj,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            unified: self.unified.clone(),
            ..Default::default()
        }
    }
}

impl ContainerRecord {
    /// The container's init process, when the record names it by pid and start time.
    pub fn init(&self) -> Option<criox_runtime::ProcessId> {
        Some(criox_runtime::ProcessId {
            pid: self.pid,
            start_time: self.pid_start_time?,
        })
        .filter(|p| p.pid > 0)
    }
}

impl Record for ContainerRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> Option<&str> {
        Some(&self.full_name)
    }
}

/// The unique name of a container, as the kubelet's naming makes it.
pub fn full_name(
    name: &str,
    attempt: u32,
    pod_name: &str,
    pod_namespace: &str,
    pod_uid: &str,
) -> String {
    format!("k8s_{name}_{pod_name}_{pod_namespace}_{pod_uid}_{attempt}")
}

/// Which containers a List call wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A full id or unique prefix.
    pub id: Option<String>,
    pub pod_id: Option<String>,
    pub state: Option<State>,
    pub labels: HashMap<String, String>,
}

impl Filter {
    pub fn matches(&self, record: &ContainerRecord) -> bool {
        self.id
            .as_ref()
            .is_none_or(|id| record.id.starts_with(id.as_str()))
            && self
                .pod_id
                .as_ref()
                .is_none_or(|pod| record.pod_id.starts_with(pod.as_str()))
            // A container still being made is not shown as anything yet.
            && match self.state {
                Some(state) => record.state == state,
                None => record.state != State::Creating,
            }
            && self
                .labels
                .iter()
                .all(|(k, v)| record.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn record(id: &str, pod: &str, state: State) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            pod_id: pod.to_string(),
            name: "app".to_string(),
            attempt: 0,
            full_name: format!("k8s_app_{id}"),
            image: "busybox".to_string(),
            image_id: "sha256:00".to_string(),
            image_ref: "busybox@sha256:00".to_string(),
            labels: HashMap::from([("tier".to_string(), "web".to_string())]),
            annotations: HashMap::new(),
            mounts: Vec::new(),
            log_path: None,
            handler: "embedded".to_string(),
            cgroup: "/criox/p/c".to_string(),
            tty: false,
            stdin: false,
            stdin_once: false,
            stop_signal: 15,
            state,
            created_at: 1,
            ..Default::default()
        }
    }

    #[test]
    fn an_update_replaces_the_values_it_sets() {
        let created = Resources::from_cri(&criox_proto::v1::LinuxContainerResources {
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 1 << 26,
            cpuset_cpus: "0".into(),
            ..Default::default()
        });
        let updated = created.updated(&criox_proto::v1::LinuxContainerResources {
            cpu_quota: 20_000,
            memory_limit_in_bytes: 1 << 27,
            ..Default::default()
        });
        assert_eq!(
            (
                updated.cpu_quota,
                updated.cpu_shares,
                updated.memory_limit_in_bytes
            ),
            (20_000, 512, 1 << 27)
        );
        assert_eq!(updated.cpuset_cpus, "0");
    }

    #[test]
    fn filters_combine_id_prefix_pod_state_and_labels() {
        let running = record("abc123", "pod1", State::Running);
        let creating = record("abd456", "pod1", State::Creating);
        let all = Filter::default();
        assert!(all.matches(&running));
        assert!(!all.matches(&creating), "half-made containers are hidden");
        let by_prefix = Filter {
            id: Some("abc".to_string()),
            ..Default::default()
        };
        assert!(by_prefix.matches(&running));
        let by_state = Filter {
            state: Some(State::Exited),
            ..Default::default()
        };
        assert!(!by_state.matches(&running));
        let by_label = Filter {
            labels: HashMap::from([("tier".to_string(), "db".to_string())]),
            ..Default::default()
        };
        assert!(!by_label.matches(&running));
        let by_pod = Filter {
            pod_id: Some("pod2".to_string()),
            ..Default::default()
        };
        assert!(!by_pod.matches(&running));
    }

    #[test]
    fn exit_reasons_follow_the_kubelet() {
        let exit = |code, oom_killed| Exit {
            code,
            finished_at: 0,
            oom_killed,
            unknown: false,
        };
        assert_eq!(exit(0, false).reason(), "Completed");
        assert_eq!(exit(1, false).reason(), "Error");
        assert_eq!(exit(137, true).reason(), "OOMKilled");
        let lost = Exit {
            unknown: true,
            ..exit(255, false)
        };
        assert_eq!(lost.reason(), "MonitorLost");
    }
}
