//! Observation: the workload records and what the runtime says about each container,
//! turned into the planner's [`Observed`] snapshot.

use crate::clock::BootMs;
use crate::reconcile::run_state::{ready, run_state};
use crate::reconcile::{Observed, ObservedContainer, ObservedWorkload};

use super::agent::Agent;

impl Agent {
    pub(super) fn observe(&self) -> Observed {
        let mut observed = Observed {
            images: self.images.states.clone(),
            ..Observed::default()
        };
        for (name, rec) in &self.records {
            let containers = rec
                .containers
                .iter()
                .map(|(c, crec)| {
                    let view = self
                        .ports
                        .runtime
                        .inspect(&self.paths.container_dir(name, c));
                    let run = run_state(crec, view.as_ref());
                    let obs = ObservedContainer {
                        ready: ready(&run, view.as_ref()),
                        run,
                        restarts: crec.restarts,
                        backoff_level: crec.backoff_level,
                        probes: view.map(|v| v.status.probes).unwrap_or_default(),
                        restart_requested: crec.restart_requested,
                    };
                    (c.clone(), obs)
                })
                .collect();
            let stopping_since: Option<BootMs> = rec.stopping.map(|s| s.requested_at_boot_ms);
            observed.workloads.insert(
                name.clone(),
                ObservedWorkload {
                    spec: rec.spec.clone(),
                    containers,
                    stopping_since,
                },
            );
        }
        observed
    }
}
