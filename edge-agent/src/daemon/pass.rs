//! One reconcile pass: collect pulls → observe → plan → apply, a few rounds until the
//! plan is empty, then report and trim the image store. A pass never waits for a process:
//! starts return once the shim reports, stops are only requested.

use std::time::Duration;

use tracing::warn;

use super::agent::Agent;
use crate::reconcile::plan;

/// A pass stops after this many rounds of actions, so that nothing can spin.
const MAX_ROUNDS: usize = 8;
/// While pulls run, the status (with their progress) is refreshed this often.
const PULL_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// When a pass used all its rounds and still had work (a `dependsOn` chain deeper than
/// [`MAX_ROUNDS`] starts one level per round), the next pass comes this soon.
const MORE_ROUNDS_AFTER: Duration = Duration::from_millis(200);

impl Agent {
    /// One reconcile pass. Returns how soon the next pass is due at the latest (`None`:
    /// only when something happens, or at the periodic resync).
    pub fn reconcile(&mut self) -> Option<Duration> {
        self.save_unsaved_desired(false);
        self.save_unsaved_records();
        self.save_unsaved_revisions();
        let mut wake_at = None;
        // The snapshot of the round that planned nothing is the device as it is now.
        let mut settled = None;
        for _ in 0..MAX_ROUNDS {
            let now = self.ports.clock.boot_ms();
            self.images.collect(self.ports.images.as_mut(), now);
            let observed = self.observe();
            let p = plan(&self.sources.desired.workloads, &observed, now);
            wake_at = p.wake_at_ms;
            if p.actions.is_empty() {
                settled = Some((observed, now));
                break;
            }
            for action in p.actions {
                self.apply(action);
            }
        }
        let unsettled = settled.is_none();
        let (observed, now) = settled.unwrap_or_else(|| {
            let now = self.ports.clock.boot_ms();
            self.images.collect(self.ports.images.as_mut(), now);
            (self.observe(), now)
        });
        // A revision rolled back just now: the fallback is planned at once (next pass).
        let rolled_back = self.judge_revisions(&observed);
        if rolled_back {
            self.merge();
        }
        if let Err(e) = self.report(&observed) {
            warn!("cannot write status: {e}");
        }
        self.trim_images();
        let mut wake = wake_at.map(|at| Duration::from_millis(at.saturating_sub(now)));
        if !self.ports.images.running().is_empty() {
            wake = Some(wake.map_or(PULL_PROGRESS_EVERY, |w| w.min(PULL_PROGRESS_EVERY)));
        }
        if unsettled {
            wake = Some(wake.map_or(MORE_ROUNDS_AFTER, |w| w.min(MORE_ROUNDS_AFTER)));
        }
        if rolled_back {
            wake = Some(Duration::ZERO);
        } else if let Some(at) = self.next_revision_deadline(now) {
            let d = Duration::from_millis(at.saturating_sub(now));
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        wake
    }
}
