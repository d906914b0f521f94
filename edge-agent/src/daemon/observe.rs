//! Observation: the records, the shims' status files and `/proc` turned into the
//! planner's [`Observed`] snapshot, and the status report built from it.

use drover_protocol::{
    Capacity, ContainerStatus, DeviceStatus, Name, Phase, WorkloadSpec, WorkloadStatus,
};

use super::Agent;
use crate::cgroups;
use crate::fsutil::{now_ms, process_matches};
use crate::reconcile::status::{container_phase, image_problem, workload_phase};
use crate::reconcile::{ImageState, Observed, ObservedContainer, ObservedWorkload, RunState};
use crate::runtime::shim_alive;
use crate::shim::status::{ShimState, ShimStatus};
use crate::state::{AgentReport, ContainerRecord, StateError, save_report};

/// The run state of a container, from its record and its shim's status file.
pub fn run_state(rec: &ContainerRecord, st: Option<&ShimStatus>) -> RunState {
    let Some(s) = st else {
        return match &rec.start_error {
            Some(e) => RunState::StartFailed {
                at_ms: e.at_ms,
                error: e.error.clone(),
            },
            None if rec.started => RunState::Lost,
            None => RunState::NotCreated,
        };
    };
    let shim_up = shim_alive(s);
    match s.state {
        ShimState::Starting if shim_up => RunState::Starting,
        ShimState::Running => match (s.pid, s.pid_start_ticks) {
            (Some(pid), Some(ticks)) if process_matches(pid, ticks) => RunState::Running {
                pid,
                started_at_ms: s.started_at_ms.unwrap_or(0),
            },
            // The container just ended and its shim is writing the final status.
            _ if shim_up => RunState::Starting,
            _ => RunState::Lost,
        },
        ShimState::Exited => RunState::Exited {
            code: s.exit_code.unwrap_or(-1),
            oom_killed: s.oom_killed,
            started_at_ms: s.started_at_ms.unwrap_or(0),
            finished_at_ms: s.finished_at_ms.unwrap_or(0),
        },
        ShimState::Failed => RunState::StartFailed {
            at_ms: s.finished_at_ms.or(s.started_at_ms).unwrap_or(0),
            error: s
                .error
                .clone()
                .unwrap_or_else(|| "container failed to start".into()),
        },
        ShimState::Starting => RunState::Lost,
    }
}

impl Agent {
    pub(super) fn observe(&self) -> Observed {
        let mut observed = Observed {
            images: self.image_states.clone(),
            ..Observed::default()
        };
        for (name, rec) in &self.records {
            let containers = rec
                .containers
                .iter()
                .map(|(c, crec)| {
                    let st = ShimStatus::read(&self.paths.container_dir(name, c));
                    let run = run_state(crec, st.as_ref());
                    (
                        c.clone(),
                        ObservedContainer {
                            run,
                            restarts: crec.restarts,
                            backoff_level: crec.backoff_level,
                        },
                    )
                })
                .collect();
            observed.workloads.insert(
                name.clone(),
                ObservedWorkload {
                    spec: rec.spec.clone(),
                    containers,
                },
            );
        }
        observed
    }

    pub(super) fn cgroups_path(&self, wl: &Name, c: &Name) -> String {
        format!("/{}/{wl}/{c}", self.cfg.cgroup_parent.trim_matches('/'))
    }

    /// Writes the status report for `ps`, but only when something other than the clock
    /// and memory figures changed: a board's flash should not be written every resync.
    pub(super) fn report(&mut self, observed: &Observed) -> Result<(), StateError> {
        let workloads = self
            .desired
            .workloads
            .iter()
            .map(|spec| self.workload_status(spec, observed))
            .collect();
        let status = DeviceStatus {
            device: self.cfg.device.clone(),
            observed_generation: self.desired.generation,
            time_ms: now_ms(),
            capacity: self.capacity(),
            workloads,
        };
        let report = AgentReport {
            agent_pid: std::process::id(),
            status,
            manifest_error: self.manifest_error.clone(),
            warnings: self.conflicts.clone(),
            hub: self.link_stats.clone(),
            labels: self
                .desired
                .workloads
                .iter()
                .filter(|w| !w.labels.is_empty())
                .map(|w| (w.name.clone(), w.labels.clone()))
                .collect(),
        };
        let key = report_key(&report);
        if self.last_report.as_ref() == Some(&key) {
            return Ok(());
        }
        save_report(&self.paths, &report)?;
        if self
            .last_report
            .as_ref()
            .is_none_or(|last| last.status != key.status)
        {
            self.status_to_publish = Some(report.status.clone());
        }
        self.last_report = Some(key);
        Ok(())
    }

    /// The device's memory and CPUs, and the memory its desired workloads reserve.
    fn capacity(&self) -> Capacity {
        let memory_reserved_bytes = self
            .desired
            .workloads
            .iter()
            .flat_map(|w| &w.containers)
            .filter_map(|c| c.resources.memory_bytes)
            .sum();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let disk_free_bytes = crate::fsutil::disk_free_bytes(&self.paths.root).unwrap_or(0);
        Capacity {
            memory_bytes: host_memory_bytes(),
            cpu_millis: cpus * 1000,
            memory_reserved_bytes,
            disk_free_bytes,
            low_disk: disk_free_bytes < self.min_free_disk(),
        }
    }

    fn workload_status(&self, desired: &WorkloadSpec, observed: &Observed) -> WorkloadStatus {
        let image_error = image_problem(&desired.containers, observed);
        let Some(wl) = observed.workloads.get(&desired.name) else {
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
            return WorkloadStatus {
                name: desired.name.clone(),
                phase,
                restarts: 0,
                containers,
                last_error: image_error,
            };
        };
        // While an update waits for its images, report what still runs.
        let last_error = match (&image_error, wl.spec == *desired) {
            (Some(e), false) => Some(format!("update pending: {e}")),
            _ => None,
        };
        let containers: Vec<ContainerStatus> = wl
            .spec
            .containers
            .iter()
            .map(|c| self.container_status(&wl.spec, c, wl.containers.get(&c.name)))
            .collect();
        let last_error =
            last_error.or_else(|| containers.iter().find_map(|c| c.last_error.clone()));
        WorkloadStatus {
            name: desired.name.clone(),
            phase: workload_phase(containers.iter().map(|c| c.phase)),
            restarts: containers.iter().map(|c| c.restarts).sum(),
            containers,
            last_error,
        }
    }

    fn container_status(
        &self,
        spec: &WorkloadSpec,
        c: &drover_protocol::ContainerSpec,
        obs: Option<&ObservedContainer>,
    ) -> ContainerStatus {
        let (phase, last_error) = container_phase(spec, obs);
        let mut st = pending_container(c, phase);
        st.last_error = last_error;
        let Some(obs) = obs else { return st };
        st.restarts = obs.restarts;
        match &obs.run {
            RunState::Running { pid, started_at_ms } => {
                st.pid = Some(*pid);
                st.started_at_ms = Some(*started_at_ms);
                if let Some((used, limit)) =
                    cgroups::memory_usage(&self.cgroups_path(&spec.name, &c.name))
                {
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
            }
            _ => {}
        }
        st
    }
}

fn pending_container(c: &drover_protocol::ContainerSpec, phase: Phase) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        phase,
        image: c.image.to_string(),
        pid: None,
        restarts: 0,
        started_at_ms: None,
        exit_code: None,
        oom_killed: false,
        last_error: None,
        memory_bytes: None,
        memory_limit_bytes: None,
        pull_done_bytes: None,
        pull_total_bytes: None,
    }
}

/// What decides whether a report is worth writing: everything but time and memory.
fn report_key(report: &AgentReport) -> AgentReport {
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

/// `MemTotal` of `/proc/meminfo`, in bytes (0 when unreadable).
fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}
