//! `plan(desired, observed, now) -> actions`: the reconciler's only decision function.
//!
//! Times are on the boot clock (`crate::clock`), which never steps. Removing a workload
//! takes two steps that never wait: `StopWorkload` asks its shims to stop; once every
//! container is down (or the grace period plus [`STOP_SLACK_MS`] has passed),
//! `RemoveWorkload` deletes it. A replacement is created after the old one is removed.
//!
//! Start order (`dependsOn`, see [`super::depends`]) gates every start, first or not: a
//! workload is created once the workloads it depends on meet their condition (its images
//! are pulled meanwhile), and each container starts once its workload's and its own
//! dependencies are met. Nothing is stopped when a dependency stops meeting its condition.

use drover_protocol::{ContainerSpec, Name, RestartPolicy, WorkloadSpec};

use super::backoff;
use super::depends::{unmet_for_start, unmet_workload};
use super::observed::{
    ImageState, Observed, ObservedContainer, ObservedWorkload, RunState, StartErrorKind,
};
use crate::clock::{BootMs, due_at};

/// How long a failed image preparation is trusted before it is tried again.
pub const IMAGE_RETRY_MS: u64 = 30_000;
/// Beyond a workload's grace period, how long its shims get to finish a stop before the
/// agent kills them.
pub const STOP_SLACK_MS: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask every container of the workload to stop (SIGTERM, then SIGKILL after its grace
    /// period, done by the shims) and record that the workload is stopping. Returns at once.
    StopWorkload { workload: Name },
    /// Delete the stopped workload: containers, pod, cgroups, record. `force`: the stop
    /// deadline passed, kill what still runs first. Volumes and logs are kept when the
    /// workload is still desired (replacement).
    RemoveWorkload {
        workload: Name,
        keep_data: bool,
        force: bool,
    },
    /// Make the image available locally.
    PrepareImage { image: String },
    /// Record the workload with its spec and set up what its containers share.
    CreateWorkload { workload: Name },
    /// The desired spec differs from the created one only in rollout bookkeeping
    /// ([`WorkloadSpec::runs_like`]): the record takes it in place; nothing restarts.
    UpdateRevision { workload: Name },
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

/// Decides what to do to move the device from `observed` towards `desired` at `now`
/// (boot clock, ms).
pub fn plan(desired: &[WorkloadSpec], observed: &Observed, now: BootMs) -> Plan {
    let mut p = Plan::default();
    let mut starts = Vec::new();
    for (name, wl) in &observed.workloads {
        let wanted = desired.iter().find(|d| &d.name == name);
        if let Some(since) = wl.stopping_since {
            finish_stop(name, wl, since, wanted.is_some(), now, &mut p);
        } else if wanted.is_none() {
            p.actions.push(Action::StopWorkload {
                workload: name.clone(),
            });
        }
    }
    for spec in desired {
        match observed.workloads.get(&spec.name) {
            Some(c) if c.stopping_since.is_some() => {} // created again once removed
            Some(c) if c.spec == *spec => {
                plan_containers(desired, c, observed, now, &mut p, &mut starts)
            }
            Some(c) if c.spec.runs_like(spec) => {
                p.actions.push(Action::UpdateRevision {
                    workload: spec.name.clone(),
                });
                plan_containers(desired, c, observed, now, &mut p, &mut starts)
            }
            Some(_) => {
                // Keep what runs until the new images are there, then stop it.
                if images_ready(&spec.containers, observed, now, &mut p) {
                    p.actions.push(Action::StopWorkload {
                        workload: spec.name.clone(),
                    });
                }
            }
            None => {
                // Images are pulled while the workload waits for its dependencies.
                if images_ready(&spec.containers, observed, now, &mut p)
                    && unmet_workload(spec, desired, observed).is_none()
                {
                    create(spec, &mut starts);
                }
            }
        }
    }
    p.actions.extend(starts);
    p
}

/// A stopping workload: removed once every container is down, or by force once the
/// grace period and the slack have passed; until then the plan wakes at that deadline.
fn finish_stop(
    name: &Name,
    wl: &ObservedWorkload,
    since: BootMs,
    still_desired: bool,
    now: BootMs,
    p: &mut Plan,
) {
    let down = wl
        .containers
        .values()
        .all(|c| !matches!(c.run, RunState::Running { .. } | RunState::Starting));
    let deadline = due_at(
        since,
        u64::from(wl.spec.stop_grace_ms).saturating_add(STOP_SLACK_MS),
        now,
    );
    if down || now >= deadline {
        p.actions.push(Action::RemoveWorkload {
            workload: name.clone(),
            keep_data: still_desired,
            force: !down,
        });
    } else {
        p.wake(deadline);
    }
}

/// Creates the workload and starts the containers that wait for no sibling; the others
/// start in a later round, once what they depend on is observed.
fn create(spec: &WorkloadSpec, starts: &mut Vec<Action>) {
    starts.push(Action::CreateWorkload {
        workload: spec.name.clone(),
    });
    for c in spec.containers.iter().filter(|c| c.depends_on.is_empty()) {
        starts.push(start(spec, &c.name, false, 0));
    }
}

/// True when every image is ready. Otherwise asks for the missing ones (and for failed
/// ones again once `IMAGE_RETRY_MS` has passed) and returns false.
fn images_ready(
    containers: &[ContainerSpec],
    observed: &Observed,
    now: BootMs,
    p: &mut Plan,
) -> bool {
    let mut ready = true;
    for c in containers {
        match observed.images.get(c.image.as_str()) {
            Some(ImageState::Ready) => {}
            Some(ImageState::Pulling { .. }) => ready = false,
            Some(ImageState::Failed { at_boot_ms, .. })
                if now < due_at(*at_boot_ms, IMAGE_RETRY_MS, now) =>
            {
                ready = false;
                p.wake(due_at(*at_boot_ms, IMAGE_RETRY_MS, now));
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

/// Starts, restarts or leaves alone each container of a workload whose spec is current
/// (`wl.spec`). Its images were ready when it was created; a container whose start found
/// its image gone from the store has it prepared again first. A container whose
/// dependencies are not met is left as it is: what meets them (a start, a probe verdict,
/// an exit) brings the next pass.
fn plan_containers(
    desired: &[WorkloadSpec],
    wl: &ObservedWorkload,
    observed: &Observed,
    now: BootMs,
    p: &mut Plan,
    starts: &mut Vec<Action>,
) {
    let spec = &wl.spec;
    for c in &spec.containers {
        let next = match wl.containers.get(&c.name) {
            None => NextStart::Now {
                restart: false,
                level: 0,
            },
            Some(obs) if image_missing(obs) => {
                // Its image went missing: pulled again first, then started at once (the
                // pull's own retry paces it, not the container's back-off).
                if !images_ready(std::slice::from_ref(c), observed, now, p) {
                    continue;
                }
                NextStart::Now {
                    restart: true,
                    level: obs.backoff_level,
                }
            }
            Some(obs) => next_start(spec.restart_policy, obs, now),
        };
        match next {
            NextStart::Never => {}
            NextStart::Now { .. } if unmet_for_start(c, wl, desired, observed).is_some() => {}
            NextStart::Now { restart, level } => starts.push(start(spec, &c.name, restart, level)),
            NextStart::At { due, .. } => p.wake(due),
        }
    }
}

/// Its last start found its image gone from the store.
pub(super) fn image_missing(obs: &ObservedContainer) -> bool {
    matches!(
        obs.run,
        RunState::StartFailed {
            kind: StartErrorKind::Image,
            ..
        }
    )
}

fn start(spec: &WorkloadSpec, container: &Name, restart: bool, backoff_level: u32) -> Action {
    Action::StartContainer {
        workload: spec.name.clone(),
        container: container.clone(),
        restart,
        backoff_level,
    }
}

/// When (if ever) a container should be started, before its dependencies are considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStart {
    Never,
    /// Now; `level` is the back-off level it starts with.
    Now {
        restart: bool,
        level: u32,
    },
    /// In back-off until `due` (boot clock); `level` consecutive quick failures so far
    /// (0: the first, which is no crash loop yet).
    At {
        due: BootMs,
        level: u32,
    },
}

/// When (if ever) a container in state `obs` should be started again.
pub fn next_start(policy: RestartPolicy, obs: &ObservedContainer, now: BootMs) -> NextStart {
    let (level, due) = match &obs.run {
        RunState::Running { .. } | RunState::Starting => return NextStart::Never,
        _ if obs.restart_requested => {
            return NextStart::Now {
                restart: true,
                level: 0,
            };
        }
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
        RunState::StartFailed { kind, .. } if kind.is_permanent() => return NextStart::Never,
        RunState::StartFailed { at_boot_ms, .. } => (
            obs.backoff_level,
            due_at(*at_boot_ms, backoff::delay_ms(obs.backoff_level), now),
        ),
        RunState::Exited {
            code,
            oom_killed,
            killed_by_probe,
            ran_ms,
            finished_at_boot_ms,
            ..
        } => {
            if !should_restart(policy, *code, *oom_killed || *killed_by_probe) {
                return NextStart::Never;
            }
            let level = backoff::effective_level(obs.backoff_level, *ran_ms);
            (
                level,
                due_at(*finished_at_boot_ms, backoff::delay_ms(level), now),
            )
        }
    };
    if now >= due {
        NextStart::Now {
            restart: true,
            level: level.saturating_add(1),
        }
    } else {
        NextStart::At { due, level }
    }
}

/// The restart policy's verdict on an exit; `killed` when the system ended it (the OOM
/// killer, a failed liveness or startup probe), a failure whatever its code.
pub fn should_restart(policy: RestartPolicy, code: i32, killed: bool) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => code != 0 || killed,
        RestartPolicy::Never => false,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_depends_tests.rs"]
mod depends_tests;
