//! `drover-hub rollout pause|resume|undo|restart DEPLOYMENT` on the controller thread:
//! each becomes a changed rollout or a new revision, staged and committed by
//! [`super::rollouts`]. Refuses, with what to do instead, an action that has nothing to act
//! on (no rollout in progress, nothing earlier to go back to).

use std::collections::BTreeMap;

use drover_protocol::{Name, WorkloadSpec};

use super::{Controller, ControllerError};
use crate::fleet::progress::{is_active, stable_revision};
use crate::fleet::rollout::{self, Phase};
use crate::fleet::{self, Object};
use crate::store::RevisionRow;
use crate::views::{RolloutAction, RolloutAnswer};

impl Controller {
    /// `rollout pause|resume|undo|restart DEPLOYMENT`.
    pub fn rollout_action(
        &mut self,
        name: &str,
        action: RolloutAction,
        now_ms: u64,
    ) -> Result<RolloutAnswer, ControllerError> {
        let name = Name::new(name).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        let Some(dep) = self.snapshot.deployments.get(&name).cloned() else {
            return Err(ControllerError::NotFound {
                kind: "deployment",
                name: name.to_string(),
            });
        };
        let state = self
            .snapshot
            .revisions
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let active = state.rollout.as_ref().filter(|r| is_active(r));
        match (action, active) {
            (RolloutAction::Pause, Some(r)) => self.set_rollout(&name, rollout::pause(r), now_ms),
            (RolloutAction::Resume, Some(r)) => self.set_rollout(&name, rollout::resume(r), now_ms),
            (RolloutAction::Undo, Some(r)) => {
                let reason = "undone by `drover-hub rollout undo`";
                self.set_rollout(&name, rollout::undo(r, reason), now_ms)
            }
            (RolloutAction::Pause | RolloutAction::Resume, None) => Err(ControllerError::Invalid(
                format!("deployment {name} has no rollout in progress"),
            )),
            (RolloutAction::Undo, None)
                if matches!(
                    state.rollout.as_ref().map(|r| &r.phase),
                    Some(Phase::RolledBack { .. })
                ) =>
            {
                let from = stable_revision(&state);
                Err(ControllerError::Invalid(format!(
                    "deployment {name} was rolled back to revision {from} already; apply a fixed spec, or `rollout restart` to try revision {} again",
                    state.revision
                )))
            }
            (RolloutAction::Undo, None) => {
                let to = stable_revision(&state);
                let back = self.previous_template(&name, to, &dep.template)?;
                let source = format!("rollout undo (revision {} again)", back.revision);
                self.roll_new_revision(&name, back.template, back.written_images, &source, now_ms)
            }
            (RolloutAction::Restart, _) => {
                let row = self.store.revision(name.as_str(), state.revision)?;
                let written = row.map(|r| r.written_images).unwrap_or_default();
                let template = self.repin(&dep, &written)?;
                self.roll_new_revision(&name, template, written, "rollout restart", now_ms)
            }
        }
    }

    /// The latest revision before `to` whose template differs from `current`.
    fn previous_template(
        &self,
        name: &Name,
        to: u64,
        current: &WorkloadSpec,
    ) -> Result<RevisionRow, ControllerError> {
        let found = self
            .store
            .revisions(name.as_str())?
            .into_iter()
            .rev()
            .find(|r| r.revision < to && r.template != *current);
        found.ok_or_else(|| {
            ControllerError::Invalid(format!(
                "deployment {name} has no earlier revision to go back to"
            ))
        })
    }

    /// The template with each `hub:` image written with a tag pinned again to the digest
    /// the tag serves now.
    fn repin(
        &self,
        dep: &fleet::Deployment,
        written: &BTreeMap<String, String>,
    ) -> Result<WorkloadSpec, ControllerError> {
        let mut d = dep.clone();
        for c in &mut d.template.containers {
            if let Some(w) = written.get(c.name.as_str()).and_then(|w| w.parse().ok()) {
                c.image = w;
            }
        }
        let mut objects = [Object::Deployment(d)];
        self.pin(&mut objects)?;
        let [Object::Deployment(d)] = objects else {
            return Err(ControllerError::Invalid("not a deployment".to_owned()));
        };
        Ok(d.template)
    }
}
