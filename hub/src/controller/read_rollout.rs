//! Read side of rollouts: `rollout status` and `rollout history`, built from the store
//! through the read connection. Never writes, never steps a rollout.

use drover_protocol::quantity::DurationMs;
use drover_protocol::{Name, WorkloadStatus};

use super::read::{is_online, load_deployments, not_found};
use super::{ControllerError, ReadSide};
use crate::fleet::progress::is_active;
use crate::fleet::rollout::{Count, DeviceState, Phase, Rollout, Strategy};
use crate::views::{RevisionView, RolloutDeviceView, RolloutStatusView, RolloutView};

impl ReadSide {
    /// `rollout status DEPLOYMENT`: the last rollout and each placed device's state.
    pub fn rollout_status(
        &self,
        name: &str,
        now_ms: u64,
    ) -> Result<RolloutStatusView, ControllerError> {
        let d = load_deployments(&self.store)?
            .into_iter()
            .find(|d| d.name.as_str() == name)
            .ok_or_else(|| not_found("deployment", name))?;
        let state = self
            .store
            .rollout_states()?
            .remove(name)
            .unwrap_or_default();
        let targets: Vec<String> = self
            .store
            .placement()?
            .remove(name)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let statuses = self.store.statuses()?;
        let r = state.rollout.as_ref();
        let devices = targets
            .iter()
            .map(|dev| {
                let st = statuses.get(dev);
                let w = st
                    .and_then(|s| s.status.as_ref())
                    .and_then(|s| s.workloads.iter().find(|w| w.name == d.name));
                device_view(
                    dev,
                    r,
                    state.revision,
                    is_online(st, &self.settings, now_ms),
                    w,
                )
            })
            .collect();
        Ok(RolloutStatusView {
            deployment: name.to_owned(),
            revision: state.revision,
            strategy: d
                .strategy
                .as_ref()
                .map_or("AllAtOnce".to_owned(), strategy_string),
            rolling_update: d.strategy.is_some(),
            rollout: r.map(|r| rollout_view(r, &targets)),
            devices,
        })
    }

    /// `rollout history DEPLOYMENT`, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<RevisionView>, ControllerError> {
        let state = self
            .store
            .rollout_states()?
            .remove(name)
            .ok_or_else(|| not_found("deployment", name))?;
        let r = state.rollout.as_ref();
        let running = match r {
            Some(r) if r.phase == Phase::Complete => r.to,
            Some(r) => r.from,
            None => state.revision,
        };
        let mark = |revision: u64| match r {
            _ if revision == running => Some("running"),
            Some(r) if r.to == revision && is_active(r) => Some("rolling out"),
            Some(r) if r.to == revision && matches!(r.phase, Phase::RolledBack { .. }) => {
                Some("rolled back")
            }
            _ => None,
        };
        Ok(self
            .store
            .revisions(name)?
            .into_iter()
            .map(|r| RevisionView {
                revision: r.revision,
                created_ms: r.created_ms,
                images: r
                    .template
                    .containers
                    .iter()
                    .map(|c| c.image.to_string())
                    .collect(),
                cause: r.source,
                current: r.revision == state.revision,
                mark: mark(r.revision).map(str::to_owned),
            })
            .collect())
    }
}

/// Counts of `r` over the Deployment's placed devices.
pub(super) fn rollout_view(r: &Rollout, targets: &[String]) -> RolloutView {
    let (updated, healthy, failed) = r.counts();
    let not_updated = targets
        .iter()
        .filter(|t| Name::new(t.as_str()).map_or(true, |n| !r.updated.contains_key(&n)))
        .count();
    let (phase, reason) = match &r.phase {
        Phase::Progressing => ("Progressing", None),
        Phase::Paused => ("Paused", None),
        Phase::Complete => ("Complete", None),
        Phase::RolledBack { reason } => ("RolledBack", Some(reason.clone())),
    };
    let pending = if reason.is_some() { 0 } else { not_updated };
    RolloutView {
        from: r.from,
        to: r.to,
        phase: phase.to_owned(),
        reason,
        batch: r.batch,
        started_ms: r.started_ms,
        total: targets.len(),
        updated,
        healthy,
        failed,
        pending,
    }
}

fn device_view(
    dev: &str,
    r: Option<&Rollout>,
    revision: u64,
    online: bool,
    w: Option<&WorkloadStatus>,
) -> RolloutDeviceView {
    let name = Name::new(dev).ok();
    let updated = r.zip(name.as_ref()).and_then(|(r, n)| r.updated.get(n));
    let (state, message) = match (r, updated) {
        (Some(r), Some(u)) => match (&u.state, &r.phase) {
            (DeviceState::Failed { reason }, _) => ("Failed", Some(reason.clone())),
            (DeviceState::Updating, Phase::RolledBack { .. }) => (
                "RolledBack",
                Some(format!(
                    "sent back to revision {} before it was judged",
                    r.from
                )),
            ),
            (DeviceState::Healthy, Phase::RolledBack { .. }) => (
                "RolledBack",
                Some(format!(
                    "was healthy on revision {}, sent back to {} with the rest",
                    r.to, r.from
                )),
            ),
            (DeviceState::Updating, Phase::Complete) => (
                "Updated",
                Some("not judged: the rollout completed without it".to_owned()),
            ),
            (DeviceState::Updating, _) if !online => ("Updating", Some(offline_message(r))),
            (DeviceState::Updating, _) => ("Updating", None),
            (DeviceState::Healthy, _) => ("Healthy", None),
        },
        (Some(r), None) if !matches!(r.phase, Phase::RolledBack { .. }) => ("Pending", None),
        _ => ("Stable", None),
    };
    let message = message.or_else(|| {
        w.and_then(|w| w.rolled_back.as_ref()).map(|b| {
            format!(
                "rolled back by itself from revision {}: {}",
                b.from, b.reason
            )
        })
    });
    RolloutDeviceView {
        device: dev.to_owned(),
        online,
        revision: match (r, &name) {
            (Some(r), Some(n)) => r.revision_for(n),
            _ => revision,
        },
        reported: w.map_or(0, |w| w.revision),
        state: state.to_owned(),
        message,
    }
}

/// Why an updated device that is offline matters (or does not) to its active rollout.
fn offline_message(r: &Rollout) -> String {
    if r.is_proven() {
        format!(
            "offline: judged when it returns (revision {} is proven elsewhere)",
            r.to
        )
    } else {
        "offline: the rollout waits for it (or `rollout undo`)".to_owned()
    }
}

fn count_string(c: Count) -> String {
    match c {
        Count::Devices(n) => n.to_string(),
        Count::Percent(p) => format!("{p}%"),
    }
}

/// `RollingUpdate (canary 1, batchSize 25%, healthTimeout 2m, failureThreshold 1)`.
fn strategy_string(s: &Strategy) -> String {
    let mut parts = vec![
        format!("canary {}", count_string(s.canary)),
        format!("batchSize {}", count_string(s.batch_size)),
    ];
    if let Some(m) = s.max_unavailable {
        parts.push(format!("maxUnavailable {}", count_string(m)));
    }
    parts.push(format!("healthTimeout {}", DurationMs(s.health_timeout_ms)));
    parts.push(format!(
        "failureThreshold {}",
        count_string(s.failure_threshold)
    ));
    if s.pause_after_canary {
        parts.push("pauseAfterCanary".to_owned());
    }
    if s.min_ready_ms > 0 {
        parts.push(format!("minReadySeconds {}", s.min_ready_ms / 1000));
    }
    format!("RollingUpdate ({})", parts.join(", "))
}
