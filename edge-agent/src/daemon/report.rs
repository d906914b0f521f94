//! The status report: built from the same snapshot the planner saw, written for `ps`
//! when it changed, and handed to the hub link when the device's status changed.
//!
//! What counts as a change is a pure rule ([`report_key`]): everything but the clock,
//! disk space and memory figures. A board's flash is not written every resync, and the
//! hub only hears about real changes (the link's heartbeat covers the rest).

use drover_protocol::{
    Capacity, ContainerStatus, DeviceStatus, Health, Phase, WorkloadSpec, WorkloadStatus,
};

use super::agent::Agent;
use super::disk_pressure::{DiskPressure, disk_pressure};
use crate::reconcile::reason::workload_reason;
use crate::reconcile::status::{container_phase, image_problem, workload_phase};
use crate::reconcile::{ImageState, Observed, ObservedWorkload, RunState};
use crate::shim::status::{ProbeStatus, last_probe_kill};
use crate::state::{AgentReport, StateError};

#[derive(Debug, Default)]
pub(super) struct Reporter {
    /// The key of the last report written for `ps`.
    last_written: Option<AgentReport>,
    /// The key of the last status handed to the hub link (sent even when the report
    /// cannot be written: a full disk must not silence the device).
    last_published: Option<DeviceStatus>,
    /// A changed status the event loop has yet to hand to the hub link.
    pub status_to_publish: Option<DeviceStatus>,
    /// The latest link statistics, shown in the report.
    pub link_stats: Option<crate::hub_link::LinkStats>,
}

/// What to do with a new report, given the key of the last one written.
#[derive(Debug, PartialEq, Eq)]
pub struct ReportDecision {
    /// Write it for `ps`.
    pub write: bool,
    /// Send the status to the hub.
    pub publish: bool,
}

/// The report's key: everything but time, free disk and memory use.
pub fn report_key(report: &AgentReport) -> AgentReport {
    let mut key = report.clone();
    key.status.time_ms = 0;
    key.status.capacity.disk_free_bytes = 0;
    for c in key
        .status
        .workloads
        .iter_mut()
        .flat_map(|w| w.containers.iter_mut())
    {
        c.memory_bytes = None;
        c.memory_limit_bytes = None;
    }
    key
}

/// Write when the key differs from the last written one; publish when its status differs
/// from the last published one.
pub fn decide(
    last_written: Option<&AgentReport>,
    last_published: Option<&DeviceStatus>,
    key: &AgentReport,
) -> ReportDecision {
    ReportDecision {
        write: last_written != Some(key),
        publish: last_published != Some(&key.status),
    }
}

impl Agent {
    /// Builds the report; queues its status for the hub and writes it as [`decide`] says.
    /// A failed write is retried at the next pass; the status goes out regardless.
    pub(super) fn report(&mut self, observed: &Observed) -> Result<(), StateError> {
        let desired = &self.sources.desired;
        let mut workloads: Vec<WorkloadStatus> = desired
            .workloads
            .iter()
            .map(|spec| WorkloadStatus {
                rolled_back: self.rolled_back(&spec.name),
                ..self.workload_status(spec, observed)
            })
            .collect();
        // Workloads no longer desired stay in the status (as `Stopping`) until removed.
        for (name, wl) in &observed.workloads {
            if !desired.workloads.iter().any(|d| &d.name == name) {
                workloads.push(self.workload_status(&wl.spec, observed));
            }
        }
        let capacity = self.capacity();
        let mut warnings = self.sources.conflicts.clone();
        if let Some(p) = self.disk_pressure(&capacity) {
            for w in &mut workloads {
                if w.last_error.is_none() {
                    w.last_error = p.notes.get(w.name.as_str()).cloned();
                }
            }
            warnings.push(p.warning);
        }
        let status = DeviceStatus {
            device: self.cfg.device.clone(),
            observed_generation: desired.generation,
            time_ms: self.ports.clock.wall_ms(),
            capacity,
            workloads,
        };
        let report = AgentReport {
            agent_pid: std::process::id(),
            status,
            manifest_error: self.sources.manifest_error.clone(),
            warnings,
            hub: self.reporter.link_stats.clone(),
            labels: desired
                .workloads
                .iter()
                .filter(|w| !w.labels.is_empty())
                .map(|w| (w.name.clone(), w.labels.clone()))
                .collect(),
        };
        let key = report_key(&report);
        let r = &mut self.reporter;
        let d = decide(r.last_written.as_ref(), r.last_published.as_ref(), &key);
        if d.publish {
            r.status_to_publish = Some(report.status.clone());
            r.last_published = Some(key.status.clone());
        }
        if d.write {
            self.ports.state.save_report(&report)?;
            self.reporter.last_written = Some(key);
        }
        Ok(())
    }

    /// The device's memory and CPUs, and the memory its desired workloads reserve.
    fn capacity(&self) -> Capacity {
        let memory_reserved_bytes = self
            .sources
            .desired
            .workloads
            .iter()
            .flat_map(|w| &w.containers)
            .filter_map(|c| c.resources.memory_bytes)
            .sum();
        let r = self.ports.host.resources(&self.paths.root);
        Capacity {
            memory_bytes: r.memory_bytes,
            cpu_millis: r.cpus * 1000,
            memory_reserved_bytes,
            disk_free_bytes: r.disk_free_bytes,
            low_disk: r.disk_free_bytes < self.cfg.images.min_free_disk.0,
        }
    }

    /// While the state disk is low: the warning naming the volumes that hold the space
    /// (measured only then, with a bounded walk).
    fn disk_pressure(&self, capacity: &Capacity) -> Option<DiskPressure> {
        if !capacity.low_disk {
            return None;
        }
        let usage = self.ports.state.volume_usage();
        disk_pressure(
            capacity.disk_free_bytes,
            self.cfg.images.min_free_disk.0,
            &usage,
        )
    }

    pub(super) fn workload_status(
        &self,
        desired: &WorkloadSpec,
        observed: &Observed,
    ) -> WorkloadStatus {
        let image_error = image_problem(&desired.containers, observed);
        let (now, wall_now) = (self.ports.clock.boot_ms(), self.ports.clock.wall_ms());
        let all = &self.sources.desired.workloads;
        let reason = workload_reason(desired, all, observed, now, wall_now);
        let Some(wl) = observed.workloads.get(&desired.name) else {
            let pending = pending_workload(desired, observed, image_error);
            return WorkloadStatus { reason, ..pending };
        };
        // While an update waits for its images (or the old one stops), report what runs.
        let last_error = match (&image_error, wl.spec == *desired) {
            (Some(e), false) => Some(format!("update pending: {e}")),
            _ => None,
        };
        let containers: Vec<ContainerStatus> = wl
            .spec
            .containers
            .iter()
            .map(|c| self.container_status(wl, c))
            .collect();
        let last_error =
            last_error.or_else(|| containers.iter().find_map(|c| c.last_error.clone()));
        WorkloadStatus {
            name: desired.name.clone(),
            phase: workload_phase(containers.iter().map(|c| c.phase)),
            restarts: containers.iter().map(|c| c.restarts).sum(),
            containers,
            last_error,
            reason,
            // What runs: the old revision's spec until a replacement is created.
            revision: wl.spec.revision,
            rolled_back: None,
        }
    }

    fn container_status(
        &self,
        wl: &ObservedWorkload,
        c: &drover_protocol::ContainerSpec,
    ) -> ContainerStatus {
        let obs = wl.containers.get(&c.name);
        let (phase, last_error) = container_phase(&wl.spec, obs, wl.stopping_since.is_some());
        let mut st = pending_container(c, phase);
        st.last_error = last_error;
        let Some(obs) = obs else { return st };
        st.restarts = obs.restarts;
        let dir = self.paths.container_dir(&wl.spec.name, &c.name);
        match &obs.run {
            RunState::Running { pid, started_at_ms } => {
                st.pid = Some(*pid);
                st.started_at_ms = Some(*started_at_ms);
                fill_probes(&mut st, &obs.probes, true);
                if let Some(why) = last_probe_kill(&dir) {
                    st.last_error = Some(format!("restarted: {why}"));
                }
                let cg = self.cgroups_path(&wl.spec.name, &c.name);
                if let Some((used, limit)) = self.ports.host.memory_usage(&cg) {
                    st.memory_bytes = Some(used);
                    st.memory_limit_bytes = limit;
                }
            }
            RunState::Exited {
                code,
                oom_killed,
                started_at_ms,
                ..
            } => {
                st.exit_code = Some(*code);
                st.oom_killed = *oom_killed;
                st.started_at_ms = Some(*started_at_ms);
                fill_probes(&mut st, &obs.probes, false);
                if let Some(why) = last_probe_kill(&dir) {
                    st.last_error = Some(format!("killed: {why}"));
                }
            }
            _ => {}
        }
        st
    }
}

/// Health, readiness and the last probe message from the shim's status (as observed this
/// pass). A running container without probes is ready; one with probes when they say so.
fn fill_probes(st: &mut ContainerStatus, probes: &ProbeStatus, running: bool) {
    st.ready = running && (probes.health == Health::None || probes.ready);
    st.health = probes.health;
    st.probe_failures = probes.failures;
    // The last failure's message, while it matters: not on a container whose probes pass.
    let passing = probes.failures == 0 && (st.ready || !running);
    st.probe_message = probes.message.clone().filter(|_| !passing);
}

/// A desired workload not created yet: pending, or failed when its image is.
fn pending_workload(
    desired: &WorkloadSpec,
    observed: &Observed,
    image_error: Option<String>,
) -> WorkloadStatus {
    let phase = if image_error.is_some() {
        Phase::Error
    } else {
        Phase::Pending
    };
    let containers = desired
        .containers
        .iter()
        .map(|c| {
            let mut st = pending_container(c, phase);
            if let Some(ImageState::Pulling {
                done_bytes,
                total_bytes,
            }) = observed.images.get(c.image.as_str())
            {
                st.pull_done_bytes = Some(*done_bytes);
                st.pull_total_bytes = Some(*total_bytes);
            }
            st
        })
        .collect();
    WorkloadStatus {
        name: desired.name.clone(),
        phase,
        restarts: 0,
        containers,
        last_error: image_error,
        reason: None,
        revision: 0,
        rolled_back: None,
    }
}

fn pending_container(c: &drover_protocol::ContainerSpec, phase: Phase) -> ContainerStatus {
    ContainerStatus::new(c.name.clone(), c.image.to_string(), phase)
}

#[cfg(test)]
mod tests {
    use drover_protocol::{Capacity, DeviceStatus, Name};

    use super::*;

    fn report(time_ms: u64, disk: u64, generation: u64, warnings: &[&str]) -> AgentReport {
        AgentReport {
            agent_pid: 1,
            status: DeviceStatus {
                device: Name::new("pi").unwrap(),
                observed_generation: generation,
                time_ms,
                capacity: Capacity {
                    disk_free_bytes: disk,
                    ..Capacity::default()
                },
                workloads: vec![],
            },
            manifest_error: None,
            warnings: warnings.iter().map(|w| (*w).to_owned()).collect(),
            hub: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn the_clock_and_disk_space_alone_change_nothing() {
        let first = report_key(&report(1, 100, 3, &[]));
        assert_eq!(
            decide(None, None, &first),
            ReportDecision {
                write: true,
                publish: true
            }
        );
        let later = report_key(&report(9_999, 50, 3, &[]));
        assert_eq!(
            decide(Some(&first), Some(&first.status), &later),
            ReportDecision {
                write: false,
                publish: false
            }
        );
    }

    #[test]
    fn a_local_warning_is_written_but_only_a_status_change_is_published() {
        let first = report_key(&report(1, 100, 3, &[]));
        let warned = report_key(&report(2, 100, 3, &["clash"]));
        assert_eq!(
            decide(Some(&first), Some(&first.status), &warned),
            ReportDecision {
                write: true,
                publish: false
            }
        );
        let next_gen = report_key(&report(3, 100, 4, &["clash"]));
        assert_eq!(
            decide(Some(&warned), Some(&warned.status), &next_gen),
            ReportDecision {
                write: true,
                publish: true
            }
        );
    }

    #[test]
    fn a_report_that_could_not_be_written_is_written_again_but_not_published_again() {
        let r = report_key(&report(1, 100, 3, &[]));
        assert_eq!(
            decide(None, Some(&r.status), &r),
            ReportDecision {
                write: true,
                publish: false
            }
        );
    }
}
