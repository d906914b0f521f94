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
//!
//! Signatures and MACs are over the bytes as sent: callers verify those bytes first and
//! convert after (see `auth`). This module must never re-encode an old message.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{AuthedStatus, SignedDesired};
use crate::codec::{self, CodecError, VERSION, Wire};
use crate::types::{ContainerSpec, DesiredState, DeviceStatus, NetworkMode, RestartPolicy};
use crate::{Name, WorkloadSpec};

/// The oldest envelope version this build reads.
pub const OLDEST_VERSION: u16 = 1;

/// A wire type together with the shape it had in envelope version 1.
pub trait Compat: Wire {
    /// `Self` when the shape did not change.
    type V1: DeserializeOwned + Into<Self>;
}

impl Compat for DesiredState {
    type V1 = DesiredStateV1;
}

impl Compat for DeviceStatus {
    type V1 = DeviceStatus;
}

impl Compat for SignedDesired {
    type V1 = SignedDesired;
}

impl Compat for AuthedStatus {
    type V1 = AuthedStatus;
}

/// Decodes a `T` from an envelope of any version from [`OLDEST_VERSION`] to
/// [`codec::VERSION`], with the same checks as [`codec::decode`].
pub fn decode_any<T: Compat>(bytes: &[u8]) -> Result<T, CodecError> {
    let (version, rest) = codec::open_envelope::<T>(bytes)?;
    match version {
        VERSION => codec::decode_body::<T, T>(rest),
        1 => codec::decode_body::<T, T::V1>(rest).map(Into::into),
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
    containers: Vec<ContainerSpec>,
    restart_policy: RestartPolicy,
    network: NetworkMode,
    volumes: Vec<Name>,
    stop_grace_ms: u32,
}

impl From<DesiredStateV1> for DesiredState {
    fn from(old: DesiredStateV1) -> DesiredState {
        DesiredState {
            device: old.device,
            generation: old.generation,
            workloads: old.workloads.into_iter().map(WorkloadSpec::from).collect(),
        }
    }
}

impl From<WorkloadSpecV1> for WorkloadSpec {
    fn from(old: WorkloadSpecV1) -> WorkloadSpec {
        WorkloadSpec {
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

#[cfg(test)]
#[path = "compat_tests.rs"]
mod tests;
