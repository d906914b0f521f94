//! The health-gated rollout of a Deployment's new revision, as a pure step function.
//!
//! `step(rollout, strategy, targets, observed, now) -> Step` looks at what the devices
//! report and decides what happens next: devices of the current batch become healthy or
//! fail; enough failures halt the rollout and give every updated device the previous
//! revision back; a healthy batch lets the next one start (the canary first, then batches);
//! when no online device is left to update the rollout is complete. Devices that are
//! offline before they get the revision are skipped, never count as failed, and get the
//! revision the rollout ends with when they return. An updated device that goes offline
//! before it is judged holds its batch until the revision proved healthy somewhere: an
//! unproven revision never spreads on the word of a device nobody hears.
//!
//! No IO, no clock: `now` is given (Unix ms), observations are plain values. The
//! controller stores the returned [`Rollout`], lets the fleet planner give each device the
//! revision [`Rollout::revision_for`] says, and records the [`Decision`]s as events.

use std::collections::BTreeMap;

use drover_protocol::Name;
use serde::{Deserialize, Serialize};

/// A number of devices, absolute or a percentage of the Deployment's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Count {
    Devices(u32),
    /// 1–100.
    Percent(u8),
}

impl Count {
    /// How many devices out of `total`: a percentage rounds up, so `10%` of 5 is 1.
    pub fn of(self, total: usize) -> usize {
        match self {
            Count::Devices(n) => n as usize,
            Count::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

/// `spec.strategy` of a Deployment with `type: RollingUpdate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strategy {
    /// Devices that get the new revision first (0: none, batches start at once).
    pub canary: Count,
    /// Devices per following batch (at least 1).
    pub batch_size: Count,
    /// Caps the batch size: devices updating and not yet healthy at once.
    pub max_unavailable: Option<Count>,
    /// How long an updated device may take to report the revision healthy.
    pub health_timeout_ms: u64,
    /// Failed devices that halt the rollout and roll it back (at least 1).
    pub failure_threshold: Count,
    /// Stop after the canary until `rollout resume`.
    pub pause_after_canary: bool,
    /// Without probes, healthy = running without a restart for this long.
    pub min_ready_ms: u64,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            canary: Count::Devices(0),
            batch_size: Count::Percent(25),
            max_unavailable: None,
            health_timeout_ms: 5 * 60_000,
            failure_threshold: Count::Devices(1),
            pause_after_canary: false,
            min_ready_ms: 0,
        }
    }
}

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Progressing,
    /// Waiting for `rollout resume` (after the canary, or paused by hand).
    Paused,
    /// Every online device runs the new revision healthy.
    Complete,
    /// Halted: every updated device went back to the previous revision.
    RolledBack {
        reason: String,
    },
}

/// One device that was given the new revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updated {
    /// Batch it was updated in (0: the canary, or the first batch without one).
    pub batch: u32,
    /// When the health timeout started: the update, or the device's return from offline.
    pub since_ms: u64,
    pub state: DeviceState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    Updating,
    Healthy,
    Failed { reason: String },
}

/// One Deployment's move from revision `from` to revision `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub from: u64,
    pub to: u64,
    pub phase: Phase,
    /// The batch in progress (0: the canary, or the first batch without one).
    pub batch: u32,
    pub updated: BTreeMap<Name, Updated>,
    pub started_ms: u64,
    /// The pause after the canary happened (it happens once).
    pub canary_paused: bool,
}

/// What one device reports about the Deployment's workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    pub online: bool,
    /// The revision it runs (0: none reported).
    pub revision: u64,
    /// Ready at this revision since (Unix ms, when the hub first heard it); `None` when not.
    pub ready_since_ms: Option<u64>,
    /// The device went back from revision `from` by itself, and why.
    pub rolled_back: Option<(u64, String)>,
    /// Why it is not healthy, as far as the status says (probe message, crash loop).
    pub problem: Option<String>,
}

/// What a step decided, for events and the CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// These devices get the new revision now.
    Update {
        batch: u32,
        devices: Vec<Name>,
    },
    Healthy {
        device: Name,
    },
    Failed {
        device: Name,
        reason: String,
    },
    Paused,
    Complete,
    /// Every updated device gets revision `from` back.
    RolledBack {
        reason: String,
    },
}

/// The next state of a rollout and what changed on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub rollout: Rollout,
    pub decisions: Vec<Decision>,
}

impl Rollout {
    /// A rollout that has not updated any device yet; the first [`step`] starts it.
    pub fn new(from: u64, to: u64, now_ms: u64) -> Rollout {
        Rollout {
            from,
            to,
            phase: Phase::Progressing,
            batch: 0,
            updated: BTreeMap::new(),
            started_ms: now_ms,
            canary_paused: false,
        }
    }

    /// The revision `device` should run now.
    pub fn revision_for(&self, device: &Name) -> u64 {
        match self.phase {
            Phase::Complete => self.to,
            Phase::RolledBack { .. } => self.from,
            Phase::Progressing | Phase::Paused if self.updated.contains_key(device) => self.to,
            Phase::Progressing | Phase::Paused => self.from,
        }
    }

    /// Counts for `rollout status` and `apply --wait`: (updated, healthy, failed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let healthy = self.count(|s| matches!(s, DeviceState::Healthy));
        let failed = self.count(|s| matches!(s, DeviceState::Failed { .. }));
        (self.updated.len(), healthy, failed)
    }

    /// The revision runs healthy on some device of this rollout.
    pub fn is_proven(&self) -> bool {
        self.updated
            .values()
            .any(|u| u.state == DeviceState::Healthy)
    }

    fn count(&self, pred: impl Fn(&DeviceState) -> bool) -> usize {
        self.updated.values().filter(|u| pred(&u.state)).count()
    }
}

/// One step of `rollout` towards its end. `targets` are the Deployment's devices in the
/// order batches take them; `observed` what each reports (a missing entry = offline and
/// silent). Terminal rollouts are returned unchanged.
pub fn step(
    rollout: &Rollout,
    strategy: &Strategy,
    targets: &[Name],
    observed: &BTreeMap<Name, Observation>,
    now_ms: u64,
) -> Step {
    let mut next = rollout.clone();
    let mut decisions = Vec::new();
    if matches!(next.phase, Phase::Complete | Phase::RolledBack { .. }) {
        return Step {
            rollout: next,
            decisions,
        };
    }
    judge_devices(&mut next, strategy, observed, now_ms, &mut decisions);
    let failed: Vec<(&Name, &str)> = next
        .updated
        .iter()
        .filter_map(|(d, u)| match &u.state {
            DeviceState::Failed { reason } => Some((d, reason.as_str())),
            _ => None,
        })
        .collect();
    let threshold = strategy.failure_threshold.of(targets.len()).max(1);
    if failed.len() >= threshold {
        let reason = rollback_reason(&failed, next.updated.len());
        next.phase = Phase::RolledBack {
            reason: reason.clone(),
        };
        decisions.push(Decision::RolledBack { reason });
        return Step {
            rollout: next,
            decisions,
        };
    }
    if all_judged(&next, targets) {
        // Nothing left to update or wait for: complete, paused or not.
        next.phase = Phase::Complete;
        decisions.push(Decision::Complete);
    } else if next.phase == Phase::Progressing && batch_done(&next, observed) {
        advance(
            &mut next,
            strategy,
            targets,
            observed,
            now_ms,
            &mut decisions,
        );
    }
    Step {
        rollout: next,
        decisions,
    }
}

/// Marks updated devices healthy or failed from what they report.
fn judge_devices(
    r: &mut Rollout,
    s: &Strategy,
    observed: &BTreeMap<Name, Observation>,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    for (device, u) in r.updated.iter_mut() {
        if u.state != DeviceState::Updating {
            continue;
        }
        let o = observed.get(device).cloned().unwrap_or_default();
        if let Some((from, why)) = &o.rolled_back
            && *from == r.to
        {
            let reason = format!("the device rolled back by itself: {why}");
            decisions.push(Decision::Failed {
                device: device.clone(),
                reason: reason.clone(),
            });
            u.state = DeviceState::Failed { reason };
        } else if !o.online {
            // Offline time never counts against the health timeout.
            u.since_ms = now_ms;
        } else if o.revision == r.to
            && o.ready_since_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= s.min_ready_ms)
        {
            decisions.push(Decision::Healthy {
                device: device.clone(),
            });
            u.state = DeviceState::Healthy;
        } else if now_ms.saturating_sub(u.since_ms) >= s.health_timeout_ms {
            let secs = s.health_timeout_ms / 1000;
            let why = o.problem.as_deref().unwrap_or(if o.revision == r.to {
                "not ready"
            } else {
                "the new revision is not running"
            });
            let reason = format!("not healthy within {secs}s: {why}");
            decisions.push(Decision::Failed {
                device: device.clone(),
                reason: reason.clone(),
            });
            u.state = DeviceState::Failed { reason };
        }
    }
}

/// The current batch no longer holds the rollout: each of its devices is judged (healthy,
/// or failed while failures stay under the threshold). An updated device that is offline
/// holds it (nothing proved the revision on it; its health timeout waits while it is
/// away), unless the revision already proved healthy on some device of this rollout: then
/// it gets judged whenever it returns, and never blocks a proven rollout.
fn batch_done(r: &Rollout, observed: &BTreeMap<Name, Observation>) -> bool {
    let proven = r.is_proven();
    r.updated
        .iter()
        .filter(|(_, u)| u.batch == r.batch)
        .all(|(d, u)| {
            let online = observed.get(d).is_some_and(|o| o.online);
            u.state != DeviceState::Updating || (proven && !online)
        })
}

/// Every target was given the revision and judged (healthy, or failed under the
/// threshold).
fn all_judged(r: &Rollout, targets: &[Name]) -> bool {
    targets.iter().all(|d| {
        r.updated
            .get(d)
            .is_some_and(|u| u.state != DeviceState::Updating)
    })
}

/// Starts the next batch, pauses after the canary, or completes.
fn advance(
    r: &mut Rollout,
    s: &Strategy,
    targets: &[Name],
    observed: &BTreeMap<Name, Observation>,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    let started = !r.updated.is_empty();
    let canary = s.canary.of(targets.len());
    if started && r.batch == 0 && canary > 0 && s.pause_after_canary && !r.canary_paused {
        r.phase = Phase::Paused;
        r.canary_paused = true;
        decisions.push(Decision::Paused);
        return;
    }
    let batch = if started { r.batch + 1 } else { 0 };
    let size = if batch == 0 && canary > 0 {
        canary
    } else {
        let mut size = s.batch_size.of(targets.len()).max(1);
        if let Some(cap) = s.max_unavailable {
            size = size.min(cap.of(targets.len()).max(1));
        }
        size
    };
    let next: Vec<Name> = targets
        .iter()
        .filter(|d| !r.updated.contains_key(*d))
        .filter(|d| observed.get(*d).is_some_and(|o| o.online))
        .take(size)
        .cloned()
        .collect();
    if next.is_empty() {
        // Complete once the revision proved itself on a device (every target judged
        // completes in `step`); with the remaining devices offline (or updated and
        // offline before reporting) and nothing proven yet, wait for one to come back
        // rather than call an unproven revision complete.
        if r.is_proven() {
            r.phase = Phase::Complete;
            decisions.push(Decision::Complete);
        }
        return;
    }
    for d in &next {
        let u = Updated {
            batch,
            since_ms: now_ms,
            state: DeviceState::Updating,
        };
        r.updated.insert(d.clone(), u);
    }
    r.batch = batch;
    decisions.push(Decision::Update {
        batch,
        devices: next,
    });
}

/// `2 of 3 updated devices failed: pi-1: not healthy within 120s: HTTP 500; pi-2: …`
/// (at most three named).
fn rollback_reason(failed: &[(&Name, &str)], updated: usize) -> String {
    let named: Vec<String> = failed
        .iter()
        .take(3)
        .map(|(d, why)| format!("{d}: {why}"))
        .collect();
    let more = failed.len().saturating_sub(3);
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(
        "{} of {updated} updated devices failed: {}{tail}",
        failed.len(),
        named.join("; ")
    )
}

/// `rollout resume`: a paused rollout goes on with the next batch at its next step.
pub fn resume(rollout: &Rollout) -> Rollout {
    let mut next = rollout.clone();
    if next.phase == Phase::Paused {
        next.phase = Phase::Progressing;
    }
    next
}

/// `rollout pause`: no new batch starts until `resume`; updated devices keep the new
/// revision and are still judged (enough failures still roll back).
pub fn pause(rollout: &Rollout) -> Rollout {
    let mut next = rollout.clone();
    if next.phase == Phase::Progressing {
        next.phase = Phase::Paused;
    }
    next
}

/// `rollout undo`: every device goes back to revision `from` now.
pub fn undo(rollout: &Rollout, reason: &str) -> Rollout {
    let mut next = rollout.clone();
    if !matches!(next.phase, Phase::RolledBack { .. }) {
        next.phase = Phase::RolledBack {
            reason: reason.to_owned(),
        };
    }
    next
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
