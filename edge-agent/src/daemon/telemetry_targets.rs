//! Which containers the telemetry sampler reads: every workload record's containers, in
//! the records' order and each workload's spec order, with their cgroup and restarts.

use super::agent::Agent;
use crate::telemetry::{ContainerTarget, WorkloadTarget};

impl Agent {
    /// The sampler's targets as the agent knows them now (after a pass).
    pub fn telemetry_targets(&self) -> Vec<WorkloadTarget> {
        self.records
            .iter()
            .map(|(wl, rec)| WorkloadTarget {
                name: wl.clone(),
                containers: rec
                    .spec
                    .containers
                    .iter()
                    .filter_map(|c| {
                        let crec = rec.containers.get(&c.name)?;
                        Some(ContainerTarget {
                            name: c.name.clone(),
                            cgroups_path: self.cgroups_path(wl, &c.name),
                            restarts: crec.restarts,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}
