//! The device's own rollback, wired into the daemon: each pass judges every workload
//! whose signed spec carries a fallback revision (the pure rules are in
//! [`crate::reconcile::rollback`]), keeps the tracks in `revisions.json`, and has the
//! planner run the fallback once a revision was rolled back — with or without a hub.
//!
//! Never runs anything the hub did not sign: the fallback is part of the signed desired
//! state. Never judges a workload without a fallback (static manifests, AllAtOnce).

use drover_protocol::{Name, RolledBack, WorkloadSpec};
use tracing::{info, warn};

use super::agent::Agent;
use crate::clock::BootMs;
use crate::reconcile::Observed;
use crate::reconcile::rollback::{self, RevisionTrack};

/// The workloads to run for the `given` ones: each as [`rollback::effective`] says.
pub(super) fn effective_workloads(
    given: &[WorkloadSpec],
    tracks: &crate::state::Revisions,
) -> Vec<WorkloadSpec> {
    given
        .iter()
        .map(|w| rollback::effective(w, tracks.get(&w.name)).clone())
        .collect()
}

impl Agent {
    /// Judges the workloads that are on trial. Returns true when one was rolled back
    /// just now (the desired workloads changed: the caller merges and plans again).
    pub(super) fn judge_revisions(&mut self, observed: &Observed) -> bool {
        let now = self.ports.clock.boot_ms();
        let wall = self.ports.clock.wall_ms();
        // Judged first with shared borrows (no copy of the specs on this every-pass path),
        // then taken in.
        let judged: Vec<(Name, RevisionTrack)> = self
            .sources
            .given
            .iter()
            .filter(|w| w.fallback.is_some())
            .filter_map(|spec| {
                let old = self.revisions.get(&spec.name);
                let open = old.is_none_or(|t| {
                    t.revision != spec.revision || (!t.proven && t.rolled_back.is_none())
                });
                let health = if open {
                    let status = self.workload_status(spec, observed);
                    rollback::health_of(&status, spec.revision, wall)
                } else {
                    rollback::Health::default()
                };
                let track = rollback::judge(spec, old, &health, now);
                (old != Some(&track)).then(|| {
                    log_change(&spec.name, old, &track);
                    (spec.name.clone(), track)
                })
            })
            .collect();
        let mut changed = !judged.is_empty();
        let mut rolled_back = false;
        for (name, track) in judged {
            let old = self.revisions.get(&name);
            rolled_back |=
                track.rolled_back.is_some() && old.is_none_or(|o| o.rolled_back.is_none());
            self.revisions.insert(name, track);
        }
        // Tracks of workloads no longer on trial are done with.
        let before = self.revisions.len();
        let given = &self.sources.given;
        self.revisions.retain(|name, _| {
            given
                .iter()
                .any(|w| &w.name == name && w.fallback.is_some())
        });
        changed |= self.revisions.len() != before;
        if changed {
            self.revisions_unsaved = true;
            self.save_unsaved_revisions();
        }
        rolled_back
    }

    /// Writes the tracks when the last write failed or they changed (a full disk: kept in
    /// memory, retried at every pass; a rollback holds in memory meanwhile).
    pub(super) fn save_unsaved_revisions(&mut self) {
        if !self.revisions_unsaved {
            return;
        }
        match self.ports.state.save_revisions(&self.revisions) {
            Ok(()) => self.revisions_unsaved = false,
            Err(e) => warn!("cannot persist the revision tracks (retried at every pass): {e}"),
        }
    }

    /// The device's rollback of `name`'s given revision, for its status.
    pub(super) fn rolled_back(&self, name: &Name) -> Option<RolledBack> {
        let given = self.sources.given.iter().find(|w| &w.name == name)?;
        let t = self.revisions.get(name)?;
        (t.revision == given.revision)
            .then(|| t.rolled_back.clone())
            .flatten()
    }

    /// The earliest health timeout still open (boot clock), so the pass wakes for it.
    pub(super) fn next_revision_deadline(&self, now: BootMs) -> Option<BootMs> {
        self.sources
            .given
            .iter()
            .filter_map(|w| rollback::deadline(w, self.revisions.get(&w.name)?, now))
            .min()
    }
}

fn log_change(name: &Name, old: Option<&RevisionTrack>, new: &RevisionTrack) {
    if let Some(rb) = &new.rolled_back {
        warn!(
            workload = %name,
            from = rb.from,
            to = rb.to,
            reason = %rb.reason,
            "revision rolled back by the device"
        );
    } else if new.proven {
        info!(workload = %name, revision = new.revision, "revision healthy: proven");
    } else if old.is_none_or(|o| o.revision != new.revision) {
        info!(workload = %name, revision = new.revision, "new revision on trial");
    }
}
