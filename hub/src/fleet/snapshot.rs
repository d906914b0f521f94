//! The fleet as the planner sees it: typed, in memory, no SQL rows and no clocks.
//!
//! The controller owns one [`FleetSnapshot`], loads it from the store once at start and
//! folds every committed change into it. This module only holds data and answers
//! questions about it; it must never do IO.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover_protocol::{Capacity, Name, WorkloadSpec};

use super::manifest::Deployment;
use super::placement::Assignments;
use super::rollout::Rollout;

/// What the hub knows about one registered device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Shared with the planner's device view (cloning the snapshot copies no labels).
    pub labels: Arc<BTreeMap<String, String>>,
    /// From the last accepted status; all zeros (= unknown, everything fits) before one.
    pub capacity: Capacity,
    /// Unix ms of the last accepted status; 0 = never.
    pub last_seen_ms: u64,
    /// Last presence message: `Some(true)` online, `Some(false)` offline, `None` never seen.
    pub presence: Option<bool>,
    /// Generation the device last reported reconciling towards.
    pub observed_generation: u64,
    /// What its last status said about each workload, as rollouts judge it.
    pub reported: Arc<BTreeMap<Name, Reported>>,
}

/// What a device last reported about one workload, as far as rollouts care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// `WorkloadStatus::revision` (0: none).
    pub revision: u64,
    /// The workload's restarts (`WorkloadStatus::restarts`): one more resets `ready_since_ms`.
    pub restarts: u32,
    /// Ready at this revision since (the hub's receive time, Unix ms); `None` when not.
    pub ready_since_ms: Option<u64>,
    /// The device went back from this revision by itself, and why.
    pub rolled_back: Option<(u64, String)>,
    /// Why it is not healthy, as far as the status says.
    pub problem: Option<String>,
}

/// A Deployment's revision and rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionState {
    /// The revision of the Deployment's current template.
    pub revision: u64,
    /// The last rollout (kept when over: it says what devices run).
    pub rollout: Option<Rollout>,
    /// The template of `rollout.from`, named after the Deployment; with `rollout`.
    pub previous: Option<Arc<WorkloadSpec>>,
}

/// A device's current desired state (what was last signed and published).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredEntry {
    pub generation: u64,
    /// Shared with the Deployment's template (see `placement::desired_by_device`).
    pub workloads: Vec<Arc<WorkloadSpec>>,
}

/// Everything the fleet planner needs, and nothing it does not.
#[derive(Clone, Debug, Default)]
pub struct FleetSnapshot {
    pub deployments: BTreeMap<Name, Deployment>,
    pub devices: BTreeMap<Name, DeviceEntry>,
    /// The placement last committed.
    pub placement: Assignments,
    pub desired: BTreeMap<Name, DesiredEntry>,
    /// Revision and rollout of each Deployment (absent: revision 0, nothing to roll out).
    pub revisions: BTreeMap<Name, RevisionState>,
    /// A device is offline when no status arrived for this long.
    pub offline_after_ms: u64,
}

impl FleetSnapshot {
    /// Online: the last presence message did not say offline, and a status arrived within
    /// `offline_after_ms` (presence alone is not enough: a broker may replay a stale one).
    pub fn is_online(&self, device: &Name, now_ms: u64) -> bool {
        self.devices
            .get(device)
            .is_some_and(|d| online(d, self.offline_after_ms, now_ms))
    }

    /// True when some Deployment with `replicas` selects this device: only then can its
    /// capacity change where replicas go.
    pub fn capacity_matters(&self, device: &Name) -> bool {
        let Some(entry) = self.devices.get(device) else {
            return false;
        };
        self.deployments
            .values()
            .any(|d| d.replicas.is_some() && d.selector.matches(&entry.labels))
    }
}

/// See [`FleetSnapshot::is_online`].
pub fn online(d: &DeviceEntry, offline_after_ms: u64, now_ms: u64) -> bool {
    d.presence != Some(false)
        && d.last_seen_ms > 0
        && now_ms.saturating_sub(d.last_seen_ms) <= offline_after_ms
}
