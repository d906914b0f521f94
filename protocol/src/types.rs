//! Wire types: what the hub wants a device to run and what the device reports back.
//!
//! These structs are encoded with postcard, which carries no field names: never reorder
//! or remove fields, only append enum variants, and bump `codec::VERSION` when a struct
//! changes shape. No `skip_serializing_if`, `flatten` or `untagged` here: they break
//! postcard decoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::health::{
    Dependency, DependencyCondition, Health, HttpScheme, Probe, ProbeAction, RolledBack,
    WorkloadReason,
};
pub use crate::refs::{EnvRef, FileItem, FilesSource, RefKind, RefValue, ValueRef};
pub use crate::security::SecurityContext;
use crate::{ImageRef, Name};

/// Everything one device should run, as of `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub device: Name,
    /// Strictly increasing per device; an agent ignores anything not newer than what it holds.
    pub generation: u64,
    pub workloads: Vec<WorkloadSpec>,
}

/// A pod-like unit: one or more containers that share a network namespace, volumes and a
/// restart policy, and are created, replaced and removed together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub name: Name,
    pub containers: Vec<ContainerSpec>,
    pub restart_policy: RestartPolicy,
    pub network: NetworkMode,
    /// Named volumes: folders in the agent's state folder that outlive container restarts
    /// and replacements, removed only with the workload.
    pub volumes: Vec<Name>,
    /// Time between SIGTERM and SIGKILL when a container is stopped.
    pub stop_grace_ms: u32,
    /// The workload's own labels (a manifest's `metadata.labels`, a Deployment's
    /// `template.metadata.labels`), checked like device labels. Since envelope version 2;
    /// `default` keeps JSON written before that readable.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Workloads of the same device to wait for before this one starts. Since version 3.
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    /// The hub's revision of the Deployment this workload comes from (0: none, e.g. a
    /// local manifest). Since version 3.
    #[serde(default)]
    pub revision: u64,
    /// Health gate of a rollout: how long this revision may take to become healthy before
    /// the device reverts to `fallback` by itself (0: never). Since version 3.
    #[serde(default)]
    pub health_timeout_ms: u32,
    /// Without probes, "healthy" means running without a restart for this long. Since
    /// version 3.
    #[serde(default)]
    pub min_ready_ms: u32,
    /// The previous revision, signed with this one, that the device reverts to when this
    /// one does not become healthy within `health_timeout_ms` (its own `fallback` is
    /// `None`). Since version 3.
    #[serde(default)]
    pub fallback: Option<Box<WorkloadSpec>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: Name,
    /// Validated; encoded as the plain string it was written as.
    pub image: ImageRef,
    /// Replaces the image's entrypoint when not empty, and then drops the image's cmd
    /// unless `args` are given (Kubernetes semantics).
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty.
    pub args: Vec<String>,
    /// Added to (and overriding) the image's environment.
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    pub devices: Vec<HostDevice>,
    /// Run a minimal init as PID 1 that forwards signals to the command and reaps orphaned
    /// processes (`docker run --init`). Since envelope version 3; `default` keeps JSON
    /// written before that readable.
    #[serde(default)]
    pub init: bool,
    /// Failing → the container is restarted per the restart policy. Since version 3.
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    /// Failing → the container is not `ready`; nothing restarts. Since version 3.
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    /// Holds the other probes off until it succeeds once; failing → restart. Since version 3.
    #[serde(default)]
    pub startup_probe: Option<Probe>,
    /// Containers of the same workload to wait for before this one starts. Since version 3.
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    /// User, capabilities, read-only root, privileged. Since version 4.
    #[serde(default)]
    pub security: SecurityContext,
    /// Env values from Secrets and ConfigMaps, set after `env`. Since version 5.
    #[serde(default)]
    pub env_refs: Vec<EnvRef>,
}

impl WorkloadSpec {
    /// A workload of `containers` with every other field at its default: restart
    /// `Always`, host network, no volumes, 10 s stop grace, no labels, no dependencies,
    /// no revision.
    pub fn new(name: Name, containers: Vec<ContainerSpec>) -> Self {
        WorkloadSpec {
            name,
            containers,
            restart_policy: RestartPolicy::Always,
            network: NetworkMode::Host,
            volumes: vec![],
            stop_grace_ms: 10_000,
            labels: BTreeMap::new(),
            depends_on: vec![],
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        }
    }

    /// True when `self` and `other` run the same containers the same way and differ at
    /// most in their rollout bookkeeping — revision, fallback, health timeout,
    /// `minReadySeconds`: a device takes such a change without restarting anything (a
    /// Deployment applied again with the template its devices run, or a device that is not
    /// in a rollout's batch yet getting its spec without the previous rollout's fallback).
    pub fn runs_like(&self, other: &WorkloadSpec) -> bool {
        let bare = |w: &WorkloadSpec| WorkloadSpec {
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
            ..w.clone()
        };
        bare(self) == bare(other)
    }
}

impl ContainerSpec {
    /// A container that runs `image` as it is: the image's entrypoint, cmd and
    /// environment, no mounts, limits or devices.
    pub fn new(name: Name, image: ImageRef) -> Self {
        ContainerSpec {
            name,
            image,
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            mounts: vec![],
            resources: Resources::default(),
            devices: vec![],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: MountSource,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A named volume of the workload (see `WorkloadSpec::volumes`).
    Volume(Name),
    /// A folder or file of the host, bind-mounted.
    HostPath(String),
    /// A fresh tmpfs of at most this many bytes.
    Tmpfs { size_bytes: u64 },
    /// A Secret's or ConfigMap's keys as files, always read-only (Secrets on tmpfs only).
    /// Since version 5.
    Files(FilesSource),
}

/// Cgroup limits of one container. `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    /// CPU quota in thousandths of a CPU (`500m` = half a core).
    pub cpu_millis: Option<u32>,
    pub pids: Option<u32>,
}

/// A host device node exposed to the container, such as `/dev/i2c-1` or `/dev/ttyUSB0`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDevice {
    pub host_path: String,
    /// Where it appears in the container; `host_path` when `None`.
    pub container_path: Option<String>,
    /// cgroup device permissions, a non-empty subset of `rwm`.
    pub permissions: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The host's network namespace.
    #[default]
    Host,
    /// A private network namespace with loopback only, shared by the workload's containers.
    None,
}

/// A full snapshot of what a device runs. Sent on every change and with every heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub device: Name,
    /// Generation of the desired state the agent is reconciling towards.
    pub observed_generation: u64,
    /// Unix time in milliseconds when this snapshot was taken.
    pub time_ms: u64,
    pub workloads: Vec<WorkloadStatus>,
    /// What the device can offer workloads; the hub's placement uses it.
    pub capacity: Capacity,
}

/// A device's resources, as reported by its agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Total memory of the device.
    pub memory_bytes: u64,
    /// Thousandths of a CPU (4 cores = 4000).
    pub cpu_millis: u32,
    /// Sum of the memory limits of the workloads it runs.
    pub memory_reserved_bytes: u64,
    /// Free space where the agent keeps images and state.
    pub disk_free_bytes: u64,
    /// True when that free space is below the agent's `images.min_free_disk`: new pulls
    /// are refused, running workloads keep running.
    pub low_disk: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub name: Name,
    pub phase: Phase,
    /// Sum of the containers' restarts.
    pub restarts: u32,
    pub containers: Vec<ContainerStatus>,
    pub last_error: Option<String>,
    /// More than the phase says: crash loop, waiting for a dependency. Since version 3.
    #[serde(default)]
    pub reason: Option<WorkloadReason>,
    /// The revision that runs (`WorkloadSpec::revision`; 0: none). Since version 3.
    #[serde(default)]
    pub revision: u64,
    /// Set when the device reverted to the fallback revision by itself. Since version 3.
    #[serde(default)]
    pub rolled_back: Option<RolledBack>,
}

impl WorkloadStatus {
    /// Running with every container ready (its readiness probe passing, or no probe).
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Running && self.containers.iter().all(|c| c.ready)
    }

    /// The state people read first, as `kubectl get pods` shows it: the reason when there
    /// is one (`CrashLoopBackOff`, `Waiting`), else the phase, marked when a running
    /// workload is not ready or unhealthy (`Running (unhealthy)`).
    pub fn display_state(&self) -> String {
        match &self.reason {
            Some(WorkloadReason::CrashLoopBackOff { .. }) => return "CrashLoopBackOff".into(),
            Some(WorkloadReason::WaitingForDependency { .. }) => return "Waiting".into(),
            None => {}
        }
        let unhealthy = self
            .containers
            .iter()
            .any(|c| c.health == Health::Unhealthy);
        match self.phase {
            Phase::Running if unhealthy => "Running (unhealthy)".into(),
            Phase::Running if !self.is_ready() => "Running (not ready)".into(),
            phase => phase.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: Name,
    pub phase: Phase,
    pub image: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub started_at_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub last_error: Option<String>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// While its image is being pulled: bytes downloaded and to download.
    pub pull_done_bytes: Option<u64>,
    pub pull_total_bytes: Option<u64>,
    /// What its probes say (`None` without probes). Since version 3.
    #[serde(default)]
    pub health: Health,
    /// Running and its readiness probe (if any) passing. Since version 3.
    #[serde(default)]
    pub ready: bool,
    /// Consecutive failures of the probe that is failing now. Since version 3.
    #[serde(default)]
    pub probe_failures: u32,
    /// The last probe's message (output or error), at most 256 bytes. Since version 3.
    #[serde(default)]
    pub probe_message: Option<String>,
}

impl ContainerStatus {
    /// A container in `phase` with nothing observed yet: no pid, restarts, exit, memory,
    /// pull progress or probe verdict (`ready` false).
    pub fn new(name: Name, image: String, phase: Phase) -> Self {
        ContainerStatus {
            name,
            phase,
            image,
            pid: None,
            restarts: 0,
            started_at_ms: None,
            exit_code: None,
            oom_killed: false,
            last_error: None,
            memory_bytes: None,
            memory_limit_bytes: None,
            pull_done_bytes: None,
            pull_total_bytes: None,
            health: Health::None,
            ready: false,
            probe_failures: 0,
            probe_message: None,
        }
    }
}

/// Where a workload or container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for its image or for its turn to be created.
    Pending,
    Running,
    /// Exited and waiting for its back-off before the next restart.
    BackOff,
    /// Exited with code 0 and will not be restarted.
    Succeeded,
    /// Exited with an error (or was killed) and will not be restarted.
    Failed,
    /// Cannot be started: image missing or broken, bad spec. `last_error` says why.
    Error,
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::BackOff => "BackOff",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Stopping => "Stopping",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
