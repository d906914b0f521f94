//! Revisions and rollouts on the controller thread: a changed template becomes a numbered
//! revision (and starts a rollout under a `RollingUpdate` strategy); every active rollout
//! is stepped after each status batch and on a timer (`rollout pause|resume|undo|restart`:
//! [`super::rollout_actions`]).
//!
//! Deciding is [`fleet::progress`](crate::fleet::progress) and
//! [`fleet::rollout`](crate::fleet::rollout); this module only stages the results on a
//! candidate snapshot and commits them through [`Controller::commit`] (or, when no
//! device's desired state can change, one plain transaction). It never publishes itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover_protocol::{Name, WorkloadSpec};

use super::{Controller, ControllerError};
use crate::fleet::progress::{self, is_active, next_revision};
use crate::fleet::rollout::{self, Decision, Phase, Step};
use crate::fleet::{FleetSnapshot, RevisionState};
use crate::store::{Event, EventReason, RevisionRow, RolloutStateRow, Store};
use crate::views::{RolloutAnswer, RolloutRef};

/// A new revision staged on a candidate snapshot, to be written with it.
pub(super) struct NewRevision {
    pub row: RevisionRow,
    pub started: Option<RolloutRef>,
}

impl Controller {
    /// Loads each Deployment's revision and rollout, with the template its rollout comes
    /// from.
    pub(super) fn load_revisions(&mut self) -> Result<(), ControllerError> {
        for (name, row) in self.store.rollout_states()? {
            let Ok(name) = Name::new(name) else { continue };
            let previous = match &row.rollout {
                Some(r) => self
                    .store
                    .revision(name.as_str(), r.from)?
                    .map(|rev| Arc::new(named(rev.template, &name))),
                None => None,
            };
            let state = RevisionState {
                revision: row.revision,
                rollout: row.rollout.filter(|_| previous.is_some()),
                previous,
            };
            self.snapshot.revisions.insert(name, state);
        }
        Ok(())
    }

    /// Steps every active rollout; commits what changed. Cheap when none is active.
    pub fn step_rollouts(&mut self, now_ms: u64) {
        if !self
            .snapshot
            .revisions
            .values()
            .any(|s| s.rollout.as_ref().is_some_and(is_active))
            || self.catching_up(now_ms)
        {
            return;
        }
        let steps = progress::step_all(&self.snapshot, now_ms);
        if steps.is_empty() {
            return;
        }
        let mut next = self.snapshot.clone();
        let events = apply_steps(&mut next, steps, now_ms);
        let moves = events.1;
        let events = events.0;
        let result = if moves {
            self.commit(next, now_ms, |s, _| add_events(s, &events))
                .map(drop)
        } else {
            // No device changes revision: no plan, no signing.
            let before = &self.snapshot;
            self.store
                .atomically(|s| {
                    persist_revisions(s, before, &next)?;
                    add_events(s, &events)
                })
                .map(|()| self.snapshot = next)
        };
        if let Err(e) = result {
            tracing::error!("cannot record a rollout step: {e}");
        }
    }

    /// Right after the hub (re)connected to the broker (a hub restart, a broker outage),
    /// devices it has not heard from since look offline only because it was away: a
    /// rollout stepped now would skip them all and, its revision proven on one device,
    /// complete — handing the revision to the whole fleet at once as they return. Steps
    /// wait until every device heard before and not known offline has reported again, or
    /// `offline_after` has passed.
    fn catching_up(&mut self, now_ms: u64) -> bool {
        let Some(at) = self.reconnected_ms else {
            return false;
        };
        let waiting =
            now_ms < at.saturating_add(self.snapshot.offline_after_ms)
                && self.snapshot.devices.values().any(|d| {
                    d.presence != Some(false) && d.last_seen_ms > 0 && d.last_seen_ms < at
                });
        if !waiting {
            self.reconnected_ms = None;
        }
        waiting
    }

    pub(super) fn set_rollout(
        &mut self,
        name: &Name,
        r: rollout::Rollout,
        now_ms: u64,
    ) -> Result<RolloutAnswer, ControllerError> {
        let mut next = self.snapshot.clone();
        let (reason, message) = match &r.phase {
            Phase::Paused => (EventReason::RolloutPaused, "paused".to_owned()),
            Phase::RolledBack { reason } => (
                EventReason::RolledBack,
                format!("rolled back to revision {}: {reason}", r.from),
            ),
            _ => (EventReason::RolloutResumed, "resumed".to_owned()),
        };
        let rollout_ref = RolloutRef {
            deployment: name.to_string(),
            from: r.from,
            to: r.to,
        };
        if let Some(st) = next.revisions.get_mut(name) {
            st.rollout = Some(r);
        }
        // A resumed rollout starts its next batch now rather than at the next tick.
        let steps = progress::step_all(&next, now_ms);
        let (mut events, _) = apply_steps(&mut next, steps, now_ms);
        events.insert(
            0,
            Event::deployment(now_ms, name.as_str(), reason, &message),
        );
        let ((), plan) = self.commit(next, now_ms, |s, _| add_events(s, &events))?;
        Ok(RolloutAnswer {
            message: format!("deployment/{name} {message}"),
            changed_devices: plan.changes.len(),
            rollout: Some(rollout_ref),
        })
    }

    /// Makes `template` the Deployment's next revision and rolls it out (undo, restart).
    pub(super) fn roll_new_revision(
        &mut self,
        name: &Name,
        template: WorkloadSpec,
        written: BTreeMap<String, String>,
        source: &str,
        now_ms: u64,
    ) -> Result<RolloutAnswer, ControllerError> {
        let mut next = self.snapshot.clone();
        if let Some(d) = next.deployments.get_mut(name) {
            d.template = template;
        }
        let rev = stage_revision(&self.snapshot, &mut next, name, written, source, now_ms);
        let steps = progress::step_all(&next, now_ms);
        let (events, _) = apply_steps(&mut next, steps, now_ms);
        let row = crate::store::DeploymentRow {
            deployment: next.deployments[name].clone(),
            source: source.to_owned(),
            updated_ms: now_ms,
        };
        let ((), plan) = self.commit(next, now_ms, |s, _| {
            s.put_deployment(&row)?;
            write_revision(s, &rev, now_ms)?;
            add_events(s, &events)
        })?;
        Ok(RolloutAnswer {
            message: format!("deployment/{name} revision {} ({source})", rev.row.revision),
            changed_devices: plan.changes.len(),
            rollout: rev.started,
        })
    }
}

/// Stages revision `+1` of `name`, whose template in `next` changed from the one in
/// `before` (or which is new): its row, and a rollout when one starts.
pub(super) fn stage_revision(
    before: &FleetSnapshot,
    next: &mut FleetSnapshot,
    name: &Name,
    written: BTreeMap<String, String>,
    source: &str,
    now_ms: u64,
) -> NewRevision {
    let old = before.revisions.get(name);
    let revision = old.map_or(0, |s| s.revision) + 1;
    let dep = &next.deployments[name];
    let old_template = before
        .deployments
        .get(name)
        .map(|d| named(d.template.clone(), name));
    let state = next_revision(
        old,
        old_template.as_ref(),
        dep.strategy.as_ref(),
        revision,
        now_ms,
    );
    let started = state.rollout.as_ref().map(|r| RolloutRef {
        deployment: name.to_string(),
        from: r.from,
        to: r.to,
    });
    let row = RevisionRow {
        deployment: name.to_string(),
        revision,
        template: dep.template.clone(),
        written_images: written,
        source: source.to_owned(),
        created_ms: now_ms,
    };
    next.revisions.insert(name.clone(), state);
    NewRevision { row, started }
}

/// Writes a staged revision and its events.
pub(super) fn write_revision(
    s: &Store,
    rev: &NewRevision,
    now_ms: u64,
) -> Result<(), ControllerError> {
    s.add_revision(&rev.row)?;
    let name = &rev.row.deployment;
    let msg = format!("revision {} ({})", rev.row.revision, rev.row.source);
    s.add_event(&Event::deployment(now_ms, name, EventReason::Revision, msg))?;
    if let Some(r) = &rev.started {
        let msg = format!("rolling out revision {} → {}", r.from, r.to);
        s.add_event(&Event::deployment(
            now_ms,
            name,
            EventReason::RolloutStarted,
            msg,
        ))?;
    }
    Ok(())
}

/// Folds steps into `next`; returns their events and whether any device changes revision.
pub(super) fn apply_steps(
    next: &mut FleetSnapshot,
    steps: BTreeMap<Name, Step>,
    now_ms: u64,
) -> (Vec<Event>, bool) {
    let mut events = Vec::new();
    let mut moves = false;
    for (name, step) in steps {
        for d in &step.decisions {
            moves |= matches!(
                d,
                Decision::Update { .. } | Decision::Complete | Decision::RolledBack { .. }
            );
            events.extend(decision_events(&name, &step.rollout, d, now_ms));
        }
        if let Some(st) = next.revisions.get_mut(&name) {
            st.rollout = Some(step.rollout);
        }
    }
    (events, moves)
}

fn decision_events(name: &Name, r: &rollout::Rollout, d: &Decision, now_ms: u64) -> Vec<Event> {
    let dep = |reason, msg: String| Event::deployment(now_ms, name.as_str(), reason, msg);
    match d {
        Decision::Update { batch, devices } => {
            let list: Vec<&str> = devices.iter().map(Name::as_str).collect();
            let what = if *batch == 0 {
                "first batch".to_owned()
            } else {
                format!("batch {batch}")
            };
            let msg = format!("revision {} to {what}: {}", r.to, list.join(", "));
            vec![dep(EventReason::RolloutBatch, msg)]
        }
        Decision::Healthy { device } => {
            vec![dep(
                EventReason::DeviceHealthy,
                format!("{device} healthy on revision {}", r.to),
            )]
        }
        Decision::Failed { device, reason } => vec![
            dep(
                EventReason::DeviceFailed,
                format!("{device} failed revision {}: {reason}", r.to),
            ),
            Event::device(
                now_ms,
                device.as_str(),
                EventReason::DeviceFailed,
                format!("{name} revision {}: {reason}", r.to),
            ),
        ],
        Decision::Paused => vec![dep(
            EventReason::RolloutPaused,
            "paused after the canary: `drover-hub rollout resume` goes on".to_owned(),
        )],
        Decision::Complete => vec![dep(
            EventReason::RolloutComplete,
            format!("revision {} rolled out", r.to),
        )],
        Decision::RolledBack { reason } => vec![dep(
            EventReason::RolledBack,
            format!("rolled back to revision {}: {reason}", r.from),
        )],
    }
}

pub(super) fn add_events(s: &Store, events: &[Event]) -> Result<(), ControllerError> {
    for e in events {
        s.add_event(e)?;
    }
    Ok(())
}

/// Writes the revision state of every Deployment of `after` whose state differs in
/// `before` (part of every commit, so no change can forget it).
pub(super) fn persist_revisions(
    s: &Store,
    before: &FleetSnapshot,
    after: &FleetSnapshot,
) -> Result<(), ControllerError> {
    for (name, st) in &after.revisions {
        if before.revisions.get(name) == Some(st) || !after.deployments.contains_key(name) {
            continue;
        }
        let row = RolloutStateRow {
            revision: st.revision,
            rollout: st.rollout.clone(),
        };
        s.set_rollout_state(name.as_str(), &row)?;
    }
    Ok(())
}

fn named(mut spec: WorkloadSpec, name: &Name) -> WorkloadSpec {
    spec.name = name.clone();
    spec
}
