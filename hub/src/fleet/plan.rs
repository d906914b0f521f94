//! The fleet planner: a pure function from a [`FleetSnapshot`] and the time to a
//! [`FleetPlan`] — the new placement, the devices whose desired state changes (and only
//! those, each with its next generation), typed events and placement warnings.
//!
//! No SQL, no signing, no logging, no clocks: the controller commits and publishes what
//! this returns. Deterministic: ordered maps only, ties broken by name.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use drover_protocol::{Name, WorkloadSpec};

use super::placement::{self, Assignments, DeviceInfo};
use super::progress;
use super::snapshot::{FleetSnapshot, online};

/// A device's next desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceChange {
    /// One more than the generation in the snapshot (1 for a device that had none).
    pub generation: u64,
    pub workloads: Vec<Arc<WorkloadSpec>>,
}

/// Something the plan did, for the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanEvent {
    /// A Deployment was placed on a device it was not on.
    Placed { deployment: Name, device: Name },
    /// A Deployment left a device.
    Unplaced { deployment: Name, device: Name },
}

/// What changes, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetPlan {
    pub placement: Assignments,
    /// Only devices whose workload list differs from the snapshot's.
    pub changes: BTreeMap<Name, DeviceChange>,
    pub events: Vec<PlanEvent>,
    /// Deployments that got less than they asked for, with why.
    pub warnings: BTreeMap<Name, Vec<String>>,
}

impl FleetPlan {
    /// True when committing this plan would change nothing.
    pub fn is_empty(&self, snapshot: &FleetSnapshot) -> bool {
        self.changes.is_empty() && self.placement == snapshot.placement
    }
}

/// Plans the whole fleet: placement (stable, see [`placement::place`]), then each
/// device's workloads, compared with what it has.
pub fn plan(snapshot: &FleetSnapshot, now_ms: u64) -> FleetPlan {
    let deployments: Vec<_> = snapshot.deployments.values().cloned().collect();
    let devices: Vec<DeviceInfo> = snapshot
        .devices
        .iter()
        .map(|(name, d)| DeviceInfo {
            name: name.clone(),
            labels: d.labels.clone(),
            online: online(d, snapshot.offline_after_ms, now_ms),
            capacity: d.capacity,
        })
        .collect();
    let (placement, warns) = placement::place(&deployments, &devices, &snapshot.placement);
    let mut wanted = progress::desired_by_device(snapshot, &deployments, &placement);
    let mut changes = BTreeMap::new();
    for name in snapshot.devices.keys() {
        let workloads = wanted.remove(name).unwrap_or_default();
        let old = snapshot.desired.get(name);
        if old.is_some_and(|o| o.workloads == workloads) {
            continue;
        }
        let generation = old.map_or(0, |o| o.generation) + 1;
        changes.insert(
            name.clone(),
            DeviceChange {
                generation,
                workloads,
            },
        );
    }
    let mut warnings: BTreeMap<Name, Vec<String>> = BTreeMap::new();
    for w in warns {
        warnings.entry(w.deployment).or_default().push(w.message);
    }
    FleetPlan {
        events: moves(&snapshot.placement, &placement),
        placement,
        changes,
        warnings,
    }
}

fn moves(previous: &Assignments, next: &Assignments) -> Vec<PlanEvent> {
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    let names: BTreeSet<&Name> = previous.keys().chain(next.keys()).collect();
    for dep in names {
        let before = previous.get(dep).unwrap_or(&empty);
        let after = next.get(dep).unwrap_or(&empty);
        for d in after.difference(before) {
            out.push(PlanEvent::Placed {
                deployment: dep.clone(),
                device: d.clone(),
            });
        }
        for d in before.difference(after) {
            out.push(PlanEvent::Unplaced {
                deployment: dep.clone(),
                device: d.clone(),
            });
        }
    }
    out
}

/// How one device's workloads change, by workload name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Compares two workload lists by name and content.
pub fn diff_workloads(old: &[Arc<WorkloadSpec>], new: &[Arc<WorkloadSpec>]) -> WorkloadDiff {
    let old_by: BTreeMap<&Name, &WorkloadSpec> = old.iter().map(|w| (&w.name, &**w)).collect();
    let new_by: BTreeMap<&Name, &WorkloadSpec> = new.iter().map(|w| (&w.name, &**w)).collect();
    let mut d = WorkloadDiff::default();
    for (name, w) in &new_by {
        match old_by.get(name) {
            None => d.added.push(name.to_string()),
            Some(o) if o != w => d.changed.push(name.to_string()),
            Some(_) => {}
        }
    }
    d.removed = old_by
        .keys()
        .filter(|n| !new_by.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    d
}
