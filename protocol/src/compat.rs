//! Reading envelopes written by older builds.
//!
//! An agent upgraded in the field must still read the signed desired state it persisted
//! before the upgrade, and a hub must still read statuses of agents not yet upgraded.
//! [`decode_any`] reads the current envelope version like [`codec::decode`] and each older
//! version into its old shape, then converts it into today's type (new fields empty).
//!
//! Version history:
//! - 1: the first wire format.
//! - 2: `WorkloadSpec.labels` appended.
//! - 3: `ContainerSpec.{init, liveness_probe, readiness_probe, startup_probe, depends_on}`,
//!   `WorkloadSpec.depends_on`, `WorkloadStatus.reason`,
//!   `ContainerStatus.{health, ready, probe_failures, probe_message}` appended.
//! - 4: `ContainerSpec.security` appended (shapes of version 3 in `compat_v3.rs`).
//! - 5: `ContainerSpec.env_refs` appended, `MountSource::Files` (shapes of version 4 in
//!   `compat_v4.rs`).
//!
//! Signatures and MACs are over the bytes as sent: callers verify those bytes first and
//! convert after (see `auth`). This module must never re-encode an old message.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{AuthedStatus, SignedDesired};
use crate::codec::{self, CodecError, VERSION, Wire};
use crate::types::EnvVar;
use crate::types::{
    Capacity, ContainerSpec, ContainerStatus, DesiredState, DeviceStatus, Health, HostDevice,
    Mount, NetworkMode, Phase, Resources, RestartPolicy, WorkloadStatus,
};
use crate::{Name, WorkloadSpec};

#[path = "compat_v3.rs"]
mod v3;
pub use v3::DesiredStateV3;
#[path = "compat_v4.rs"]
mod v4;
pub use v4::DesiredStateV4;

/// The oldest envelope version this build reads.
pub const OLDEST_VERSION: u16 = 1;

/// A wire type together with the shapes it had in older envelope versions.
pub trait Compat: Wire {
    /// The shape in envelope version 1; `Self` when the shape did not change.
    type V1: DeserializeOwned + Into<Self>;
    /// The shape in envelope version 2; `Self` when the shape did not change.
    type V2: DeserializeOwned + Into<Self>;
    /// The shape in envelope version 3; `Self` when the shape did not change.
    type V3: DeserializeOwned + Into<Self>;
    /// The shape in envelope version 4; `Self` when the shape did not change.
    type V4: DeserializeOwned + Into<Self>;
}

impl Compat for DesiredState {
    type V1 = DesiredStateV1;
    type V2 = DesiredStateV2;
    type V3 = v3::DesiredStateV3;
    type V4 = v4::DesiredStateV4;
}

impl Compat for DeviceStatus {
    type V1 = DeviceStatusV2;
    type V2 = DeviceStatusV2;
    type V3 = DeviceStatus;
    type V4 = DeviceStatus;
}

impl Compat for SignedDesired {
    type V1 = SignedDesired;
    type V2 = SignedDesired;
    type V3 = SignedDesired;
    type V4 = SignedDesired;
}

/// New in envelope version 3 (its own kind, 9): no older shape exists.
impl Compat for crate::sealed::SealedDesired {
    type V1 = crate::sealed::SealedDesired;
    type V2 = crate::sealed::SealedDesired;
    type V3 = crate::sealed::SealedDesired;
    type V4 = crate::sealed::SealedDesired;
}

impl Compat for AuthedStatus {
    type V1 = AuthedStatus;
    type V2 = AuthedStatus;
    type V3 = AuthedStatus;
    type V4 = AuthedStatus;
}

/// Decodes a `T` from an envelope of any version from [`OLDEST_VERSION`] to
/// [`codec::VERSION`], with the same checks as [`codec::decode`].
pub fn decode_any<T: Compat>(bytes: &[u8]) -> Result<T, CodecError> {
    let (version, rest) = codec::open_envelope::<T>(bytes)?;
    match version {
        VERSION => codec::decode_body::<T, T>(rest),
        1 => codec::decode_body::<T, T::V1>(rest).map(Into::into),
        2 => codec::decode_body::<T, T::V2>(rest).map(Into::into),
        3 => codec::decode_body::<T, T::V3>(rest).map(Into::into),
        4 => codec::decode_body::<T, T::V4>(rest).map(Into::into),
        found => Err(CodecError::Version { found }),
    }
}

/// `DesiredState` as encoded in envelope version 1.
#[derive(Debug, Deserialize)]
pub struct DesiredStateV1 {
    device: Name,
    generation: u64,
    workloads: Vec<WorkloadSpecV1>,
}

/// `WorkloadSpec` as encoded in envelope version 1: no labels.
#[derive(Debug, Deserialize)]
struct WorkloadSpecV1 {
    name: Name,
    containers: Vec<ContainerSpecV2>,
    restart_policy: RestartPolicy,
    network: NetworkMode,
    volumes: Vec<Name>,
    stop_grace_ms: u32,
}

/// `DesiredState` as encoded in envelope version 2.
#[derive(Debug, Deserialize)]
pub struct DesiredStateV2 {
    device: Name,
    generation: u64,
    workloads: Vec<WorkloadSpecV2>,
}

/// `WorkloadSpec` as encoded in envelope version 2: containers without `init`.
#[derive(Debug, Deserialize)]
struct WorkloadSpecV2 {
    name: Name,
    containers: Vec<ContainerSpecV2>,
    restart_policy: RestartPolicy,
    network: NetworkMode,
    volumes: Vec<Name>,
    stop_grace_ms: u32,
    labels: std::collections::BTreeMap<String, String>,
}

/// `ContainerSpec` as encoded in envelope versions 1 and 2: no `init`.
#[derive(Debug, Deserialize)]
struct ContainerSpecV2 {
    name: Name,
    image: crate::ImageRef,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    working_dir: Option<String>,
    mounts: Vec<Mount>,
    resources: Resources,
    devices: Vec<HostDevice>,
}

impl From<DesiredStateV1> for DesiredState {
    fn from(old: DesiredStateV1) -> DesiredState {
        DesiredStateV2 {
            device: old.device,
            generation: old.generation,
            workloads: old
                .workloads
                .into_iter()
                .map(WorkloadSpecV2::from)
                .collect(),
        }
        .into()
    }
}

impl From<WorkloadSpecV1> for WorkloadSpecV2 {
    fn from(old: WorkloadSpecV1) -> WorkloadSpecV2 {
        WorkloadSpecV2 {
            name: old.name,
            containers: old.containers,
            restart_policy: old.restart_policy,
            network: old.network,
            volumes: old.volumes,
            stop_grace_ms: old.stop_grace_ms,
            labels: Default::default(),
        }
    }
}

impl From<DesiredStateV2> for DesiredState {
    fn from(old: DesiredStateV2) -> DesiredState {
        DesiredState {
            device: old.device,
            generation: old.generation,
            workloads: old.workloads.into_iter().map(WorkloadSpec::from).collect(),
        }
    }
}

impl From<WorkloadSpecV2> for WorkloadSpec {
    fn from(old: WorkloadSpecV2) -> WorkloadSpec {
        WorkloadSpec {
            name: old.name,
            containers: old
                .containers
                .into_iter()
                .map(ContainerSpec::from)
                .collect(),
            restart_policy: old.restart_policy,
            network: old.network,
            volumes: old.volumes,
            stop_grace_ms: old.stop_grace_ms,
            labels: old.labels,
            depends_on: vec![],
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        }
    }
}

impl From<ContainerSpecV2> for ContainerSpec {
    fn from(old: ContainerSpecV2) -> ContainerSpec {
        ContainerSpec {
            name: old.name,
            image: old.image,
            command: old.command,
            args: old.args,
            env: old.env,
            working_dir: old.working_dir,
            mounts: old.mounts,
            resources: old.resources,
            devices: old.devices,
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

/// `DeviceStatus` as encoded in envelope versions 1 and 2.
#[derive(Debug, Deserialize)]
pub struct DeviceStatusV2 {
    device: Name,
    observed_generation: u64,
    time_ms: u64,
    workloads: Vec<WorkloadStatusV2>,
    capacity: Capacity,
}

/// `WorkloadStatus` as encoded in envelope versions 1 and 2: no reason.
#[derive(Debug, Deserialize)]
struct WorkloadStatusV2 {
    name: Name,
    phase: Phase,
    restarts: u32,
    containers: Vec<ContainerStatusV2>,
    last_error: Option<String>,
}

/// `ContainerStatus` as encoded in envelope versions 1 and 2: no health.
#[derive(Debug, Deserialize)]
struct ContainerStatusV2 {
    name: Name,
    phase: Phase,
    image: String,
    pid: Option<u32>,
    restarts: u32,
    started_at_ms: Option<u64>,
    exit_code: Option<i32>,
    oom_killed: bool,
    last_error: Option<String>,
    memory_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    pull_done_bytes: Option<u64>,
    pull_total_bytes: Option<u64>,
}

impl From<DeviceStatusV2> for DeviceStatus {
    fn from(old: DeviceStatusV2) -> DeviceStatus {
        DeviceStatus {
            device: old.device,
            observed_generation: old.observed_generation,
            time_ms: old.time_ms,
            workloads: old
                .workloads
                .into_iter()
                .map(WorkloadStatus::from)
                .collect(),
            capacity: old.capacity,
        }
    }
}

impl From<WorkloadStatusV2> for WorkloadStatus {
    fn from(old: WorkloadStatusV2) -> WorkloadStatus {
        WorkloadStatus {
            name: old.name,
            phase: old.phase,
            restarts: old.restarts,
            containers: old
                .containers
                .into_iter()
                .map(ContainerStatus::from)
                .collect(),
            last_error: old.last_error,
            reason: None,
            revision: 0,
            rolled_back: None,
        }
    }
}

impl From<ContainerStatusV2> for ContainerStatus {
    fn from(old: ContainerStatusV2) -> ContainerStatus {
        ContainerStatus {
            name: old.name,
            phase: old.phase,
            image: old.image,
            pid: old.pid,
            restarts: old.restarts,
            started_at_ms: old.started_at_ms,
            exit_code: old.exit_code,
            oom_killed: old.oom_killed,
            last_error: old.last_error,
            memory_bytes: old.memory_bytes,
            memory_limit_bytes: old.memory_limit_bytes,
            pull_done_bytes: old.pull_done_bytes,
            pull_total_bytes: old.pull_total_bytes,
            health: Health::None,
            // Agents before version 3 had no probes: running meant ready.
            ready: old.phase == Phase::Running,
            probe_failures: 0,
            probe_message: None,
        }
    }
}

#[cfg(test)]
#[path = "compat_tests.rs"]
mod tests;
