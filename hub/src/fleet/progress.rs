//! Rollouts as the fleet planner drives them: which revision (and which signed fallback)
//! each device of a Deployment gets, when a new revision starts a rollout, and one step of
//! every rollout in progress from what the devices last reported.
//!
//! Pure, like the rest of `fleet`: the snapshot and the time in, values out. The
//! controller stores what [`step_all`] returns and lets [`plan`](super::plan) publish it.
//!
//! Rules (also in the README):
//! - Revisions and their number go on the wire only for Deployments with a
//!   `RollingUpdate` strategy; an all-at-once Deployment's devices get exactly the
//!   template, as before revisions existed.
//! - A new revision of a Deployment that has one already starts a rollout from the
//!   *stable* revision: the one its devices run when no rollout is under way (the last
//!   completed rollout's `to`, or a halted or superseded rollout's `from`). A rollout in
//!   progress is superseded: its devices go back to the stable revision until the new
//!   rollout reaches them (never onto a revision nobody proved healthy).
//! - A device keeps the exact spec it was given while its revision does not change, so a
//!   rollout re-signs only the devices it moves.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover_protocol::{DeviceStatus, Name, WorkloadSpec, WorkloadStatus};

use super::manifest::Deployment;
use super::placement::Assignments;
use super::rollout::{Observation, Phase, Rollout, Step, Strategy, step};
use super::snapshot::{FleetSnapshot, Reported, RevisionState, online};

/// The revision a Deployment's devices run when no rollout moves them.
pub fn stable_revision(state: &RevisionState) -> u64 {
    match &state.rollout {
        None => state.revision,
        Some(r) if r.phase == Phase::Complete => r.to,
        Some(r) => r.from,
    }
}

/// True while a rollout still moves devices or waits for `resume`.
pub fn is_active(r: &Rollout) -> bool {
    matches!(r.phase, Phase::Progressing | Phase::Paused)
}

/// The state after the template of a Deployment became revision `revision`. `before` is
/// the state it had and `old_template` its template then (`None`: it was just created).
/// With a strategy and a stable revision to come from, a rollout starts; otherwise every
/// device gets the new revision at once.
pub fn next_revision(
    before: Option<&RevisionState>,
    old_template: Option<&WorkloadSpec>,
    strategy: Option<&Strategy>,
    revision: u64,
    now_ms: u64,
) -> RevisionState {
    let plain = RevisionState {
        revision,
        rollout: None,
        previous: None,
    };
    let (Some(before), Some(old), Some(_)) = (before, old_template, strategy) else {
        return plain;
    };
    let stable = stable_revision(before);
    let previous = if stable == before.revision {
        Some(Arc::new(old.clone()))
    } else {
        before.previous.clone()
    };
    match previous {
        Some(previous) if stable > 0 => RevisionState {
            revision,
            rollout: Some(Rollout::new(stable, revision, now_ms)),
            previous: Some(previous),
        },
        _ => plain,
    }
}

/// What a status says about each workload, for rollouts. `before` is what the device said
/// last, `at_ms` when the hub received this status.
pub fn reported_of(
    status: &DeviceStatus,
    before: &BTreeMap<Name, Reported>,
    at_ms: u64,
) -> BTreeMap<Name, Reported> {
    status
        .workloads
        .iter()
        .map(|w| (w.name.clone(), reported(w, before.get(&w.name), at_ms)))
        .collect()
}

/// Ready since: when the hub first heard the workload ready at this revision (carried
/// over while it stays ready, at the same revision, without a restart), by the hub's own
/// clock. Neither a container's start (it may become ready much later) nor any other
/// device clock reading counts towards `minReadySeconds`.
fn reported(w: &WorkloadStatus, before: Option<&Reported>, at_ms: u64) -> Reported {
    let ready_since_ms = w.is_ready().then(|| {
        before
            .filter(|b| b.revision == w.revision && b.restarts == w.restarts)
            .and_then(|b| b.ready_since_ms)
            .unwrap_or(at_ms)
    });
    Reported {
        revision: w.revision,
        restarts: w.restarts,
        ready_since_ms,
        rolled_back: w.rolled_back.as_ref().map(|r| (r.from, r.reason.clone())),
        problem: (!w.is_ready()).then(|| problem(w, at_ms)).flatten(),
    }
}

/// The most telling reason a workload is not ready: a probe's message, the workload's
/// reason (crash loop), or its last error.
fn problem(w: &WorkloadStatus, at_ms: u64) -> Option<String> {
    let probe = w.containers.iter().find_map(|c| {
        let msg = c.probe_message.as_ref().filter(|_| !c.ready)?;
        Some(format!("container {}: {msg}", c.name))
    });
    probe
        .or_else(|| w.reason.as_ref().map(|r| r.describe(at_ms)))
        .or_else(|| w.last_error.clone())
        .or_else(|| w.containers.iter().find_map(|c| c.last_error.clone()))
}

/// The devices a Deployment is placed on, in the order batches take them (by name).
pub fn targets(snapshot: &FleetSnapshot, deployment: &Name) -> Vec<Name> {
    snapshot
        .placement
        .get(deployment)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

/// What each target reports about the Deployment's workload now.
pub fn observations(
    snapshot: &FleetSnapshot,
    deployment: &Name,
    targets: &[Name],
    now_ms: u64,
) -> BTreeMap<Name, Observation> {
    targets
        .iter()
        .filter_map(|t| {
            let d = snapshot.devices.get(t)?;
            let r = d.reported.get(deployment).cloned().unwrap_or_default();
            let o = Observation {
                online: online(d, snapshot.offline_after_ms, now_ms),
                revision: r.revision,
                ready_since_ms: r.ready_since_ms,
                rolled_back: r.rolled_back,
                problem: r.problem,
            };
            Some((t.clone(), o))
        })
        .collect()
}

/// One step of every active rollout; only those that changed or decided something.
pub fn step_all(snapshot: &FleetSnapshot, now_ms: u64) -> BTreeMap<Name, Step> {
    let mut out = BTreeMap::new();
    for (name, state) in &snapshot.revisions {
        let (Some(r), Some(d)) = (&state.rollout, snapshot.deployments.get(name)) else {
            continue;
        };
        let Some(strategy) = d.strategy.as_ref().filter(|_| is_active(r)) else {
            continue;
        };
        let targets = targets(snapshot, name);
        let observed = observations(snapshot, name, &targets, now_ms);
        let s = step(r, strategy, &targets, &observed, now_ms);
        if s.rollout != *r || !s.decisions.is_empty() {
            out.insert(name.clone(), s);
        }
    }
    out
}

/// What each device should run: the workloads of the Deployments placed on it, named after
/// their Deployment and sorted by name. A Deployment with a strategy gives each device the
/// revision its rollout says, with the revision number, and on the new revision the
/// previous one as the signed fallback and the strategy's health timeout.
pub fn desired_by_device(
    snapshot: &FleetSnapshot,
    deployments: &[Deployment],
    placement: &Assignments,
) -> BTreeMap<Name, Vec<Arc<WorkloadSpec>>> {
    let mut out: BTreeMap<Name, Vec<Arc<WorkloadSpec>>> = BTreeMap::new();
    for d in deployments {
        let Some(devices) = placement.get(&d.name) else {
            continue;
        };
        let specs = Specs::of(d, snapshot.revisions.get(&d.name));
        for device in devices {
            let spec = specs.for_device(snapshot, &d.name, device);
            out.entry(device.clone()).or_default().push(spec);
        }
    }
    for specs in out.values_mut() {
        specs.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// The specs one Deployment hands out: each one allocation, however many devices run it.
struct Specs<'a> {
    current: Arc<WorkloadSpec>,
    /// The rollout and the spec of its `from` revision, when one moves devices.
    rollout: Option<(&'a Rollout, Arc<WorkloadSpec>)>,
    /// Revisions are on the wire (the Deployment has a strategy).
    revisioned: bool,
}

impl<'a> Specs<'a> {
    fn of(d: &Deployment, state: Option<&'a RevisionState>) -> Specs<'a> {
        let mut current = d.template.clone();
        current.name = d.name.clone();
        let (Some(strategy), Some(state)) = (&d.strategy, state) else {
            return Specs {
                current: Arc::new(current),
                rollout: None,
                revisioned: false,
            };
        };
        current.revision = state.revision;
        let rollout = match (&state.rollout, &state.previous) {
            (Some(r), Some(prev)) if r.to == state.revision => {
                let mut old = (**prev).clone();
                old.name = d.name.clone();
                old.revision = r.from;
                old.fallback = None;
                current.fallback = Some(Box::new(old.clone()));
                current.health_timeout_ms =
                    u32::try_from(strategy.health_timeout_ms).unwrap_or(u32::MAX);
                Some((r, Arc::new(old)))
            }
            _ => None,
        };
        Specs {
            current: Arc::new(current),
            rollout,
            revisioned: true,
        }
    }

    fn for_device(
        &self,
        snapshot: &FleetSnapshot,
        deployment: &Name,
        device: &Name,
    ) -> Arc<WorkloadSpec> {
        if !self.revisioned {
            return self.current.clone();
        }
        let spec = match &self.rollout {
            Some((r, old)) if r.revision_for(device) == r.from => old,
            _ => &self.current,
        };
        // Keep the exact spec a device holds while its revision stays: no re-signing.
        let held = snapshot.desired.get(device).and_then(|e| {
            e.workloads
                .iter()
                .find(|w| w.name == *deployment && w.revision == spec.revision)
        });
        held.unwrap_or(spec).clone()
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
