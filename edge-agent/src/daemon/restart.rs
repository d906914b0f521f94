//! What hub commands need from the daemon: the workloads it runs, and restarts asked for
//! by `drover-hub restart`. A restart is requested, never waited for: each container is
//! asked to stop and marked, and the planner starts it again as soon as it is observed
//! down (counted as a restart, whatever the restart policy).

use drover_protocol::Name;
use tracing::info;

use super::agent::Agent;
use crate::commands::Workloads;

impl Agent {
    /// The workloads that exist on the device and their containers (not those being
    /// removed).
    pub fn workloads(&self) -> Workloads {
        self.records
            .iter()
            .filter(|(_, r)| r.stopping.is_none())
            .map(|(n, r)| (n.clone(), r.containers.keys().cloned().collect()))
            .collect()
    }

    /// Asks every container of `wl` to stop and to start again at once; returns what
    /// the hub is told.
    pub fn request_restart(&mut self, wl: &Name) -> Result<String, String> {
        let Some(rec) = self.records.get_mut(wl) else {
            let known: Vec<String> = self.workloads().keys().map(Name::to_string).collect();
            return Err(format!(
                "no workload named {wl} on {} (it runs: {})",
                self.cfg.device,
                if known.is_empty() {
                    "nothing".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        if rec.stopping.is_some() {
            return Err(format!(
                "workload {wl} is being removed or replaced on {}: nothing to restart",
                self.cfg.device
            ));
        }
        let mut names = Vec::new();
        for (c, crec) in rec.containers.iter_mut() {
            crec.restart_requested = true;
            self.ports
                .runtime
                .request_stop(&self.paths.container_dir(wl, c));
            names.push(c.to_string());
        }
        info!(workload = %wl, containers = ?names, "restart requested: stopping its containers");
        self.save_record(wl);
        Ok(format!(
            "restarting {wl} on {}: {}",
            self.cfg.device,
            names.join(", ")
        ))
    }
}
