//! `plan(desired, observed, now) -> actions`: the reconciler's only decision function.

use drover_protocol::{ContainerSpec, Name, RestartPolicy, WorkloadSpec};

use super::backoff;
use super::observed::{ImageState, Observed, ObservedContainer, ObservedWorkload, RunState};

/// How long a failed image preparation is trusted before it is tried again.
pub const IMAGE_RETRY_MS: u64 = 30_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop (SIGTERM, grace, SIGKILL) and delete every container of the workload and its
    /// cgroups. Volumes and logs are kept when the workload is being replaced.
    RemoveWorkload {
        workload: Name,
        grace_ms: u32,
        keep_data: bool,
    },
    /// Make the image available locally.
    PrepareImage { image: String },
    /// Record the workload with its spec and set up what its containers share.
    CreateWorkload { workload: Name },
    /// Create and start one container. `restart` counts as a restart; the container's
    /// back-off level becomes `backoff_level`.
    StartContainer {
        workload: Name,
        container: Name,
        restart: bool,
        backoff_level: u32,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order: removals first, then image preparation, then creations and starts.
    pub actions: Vec<Action>,
    /// When the plan should be made again even if nothing happens (a back-off ends).
    pub wake_at_ms: Option<u64>,
}

impl Plan {
    fn wake(&mut self, at_ms: u64) {
        self.wake_at_ms = Some(self.wake_at_ms.map_or(at_ms, |w| w.min(at_ms)));
    }
}

/// Decides what to do to move the device from `observed` towards `desired` at `now_ms`.
pub fn plan(desired: &[WorkloadSpec], observed: &Observed, now_ms: u64) -> Plan {
    let mut p = Plan::default();
    for (name, wl) in &observed.workloads {
        if !desired.iter().any(|d| &d.name == name) {
            p.actions.push(Action::RemoveWorkload {
                workload: name.clone(),
                grace_ms: wl.spec.stop_grace_ms,
                keep_data: false,
            });
        }
    }
    let mut starts = Vec::new();
    for spec in desired {
        let current = observed.workloads.get(&spec.name);
        if current.is_some_and(|c| c.spec == *spec) {
            if let Some(c) = current {
                plan_containers(spec, c, now_ms, &mut p, &mut starts);
            }
            continue;
        }
        if !images_ready(&spec.containers, observed, now_ms, &mut p) {
            continue; // keep what runs until the new images are there
        }
        if let Some(c) = current {
            p.actions.push(Action::RemoveWorkload {
                workload: spec.name.clone(),
                grace_ms: c.spec.stop_grace_ms,
                keep_data: true,
            });
        }
        starts.push(Action::CreateWorkload {
            workload: spec.name.clone(),
        });
        for c in &spec.containers {
            starts.push(Action::StartContainer {
                workload: spec.name.clone(),
                container: c.name.clone(),
                restart: false,
                backoff_level: 0,
            });
        }
    }
    p.actions.extend(starts);
    p
}

/// True when every image is ready. Otherwise asks for the missing ones (and for failed
/// ones again once `IMAGE_RETRY_MS` has passed) and returns false.
fn images_ready(
    containers: &[ContainerSpec],
    observed: &Observed,
    now_ms: u64,
    p: &mut Plan,
) -> bool {
    let mut ready = true;
    for c in containers {
        match observed.images.get(c.image.as_str()) {
            Some(ImageState::Ready) => {}
            Some(ImageState::Pulling { .. }) => ready = false,
            Some(ImageState::Failed { at_ms, .. })
                if now_ms < at_ms.saturating_add(IMAGE_RETRY_MS) =>
            {
                ready = false;
                p.wake(at_ms.saturating_add(IMAGE_RETRY_MS));
            }
            _ => {
                ready = false;
                let action = Action::PrepareImage {
                    image: c.image.to_string(),
                };
                if !p.actions.contains(&action) {
                    p.actions.push(action);
                }
            }
        }
    }
    ready
}

/// Starts, restarts or leaves alone each container of a workload whose spec is current.
/// Its images were ready when it was created; the daemon prepares them again on start
/// if it has to (after an agent restart), and a failure there is a `StartFailed`.
fn plan_containers(
    spec: &WorkloadSpec,
    wl: &ObservedWorkload,
    now_ms: u64,
    p: &mut Plan,
    starts: &mut Vec<Action>,
) {
    for c in &spec.containers {
        let Some(obs) = wl.containers.get(&c.name) else {
            starts.push(start(spec, &c.name, false, 0));
            continue;
        };
        match next_start(spec.restart_policy, obs, now_ms) {
            NextStart::Never => {}
            NextStart::Now { restart, level } => starts.push(start(spec, &c.name, restart, level)),
            NextStart::At(at) => p.wake(at),
        }
    }
}

fn start(spec: &WorkloadSpec, container: &Name, restart: bool, backoff_level: u32) -> Action {
    Action::StartContainer {
        workload: spec.name.clone(),
        container: container.clone(),
        restart,
        backoff_level,
    }
}

enum NextStart {
    Never,
    Now { restart: bool, level: u32 },
    At(u64),
}

/// When (if ever) a container in state `obs` should be started again.
fn next_start(policy: RestartPolicy, obs: &ObservedContainer, now_ms: u64) -> NextStart {
    let (level, due) = match &obs.run {
        RunState::Running { .. } | RunState::Starting => return NextStart::Never,
        RunState::NotCreated => {
            return NextStart::Now {
                restart: false,
                level: 0,
            };
        }
        RunState::Lost => {
            return NextStart::Now {
                restart: true,
                level: obs.backoff_level,
            };
        }
        RunState::StartFailed { at_ms, .. } => (
            obs.backoff_level,
            at_ms.saturating_add(backoff::delay_ms(obs.backoff_level)),
        ),
        RunState::Exited {
            code,
            oom_killed,
            started_at_ms,
            finished_at_ms,
        } => {
            if !should_restart(policy, *code, *oom_killed) {
                return NextStart::Never;
            }
            let level =
                backoff::effective_level(obs.backoff_level, *started_at_ms, *finished_at_ms);
            (
                level,
                finished_at_ms.saturating_add(backoff::delay_ms(level)),
            )
        }
    };
    if now_ms >= due {
        NextStart::Now {
            restart: true,
            level: level.saturating_add(1),
        }
    } else {
        NextStart::At(due)
    }
}

/// The restart policy's verdict on an exit.
pub fn should_restart(policy: RestartPolicy, code: i32, oom_killed: bool) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => code != 0 || oom_killed,
        RestartPolicy::Never => false,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
