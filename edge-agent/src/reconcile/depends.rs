//! Start order (`dependsOn`): whether a workload or a container may start now, judged from
//! the observed snapshot alone, so the order holds again after an agent restart or a
//! power cut (every container is then `Lost`, and each waits for its dependencies to
//! come back before it starts again).
//!
//! The rules, per container of the dependency:
//! - `started`: running, or ran to completion and will not be restarted (an init-style
//!   container that finished has started);
//! - `healthy`: running and ready (its readiness probe passes, or it has no probe), or
//!   finished as above;
//! - `completed`: exited with code 0 (and not killed for memory).
//!
//! A workload meets a condition when all of its containers do; one that is not desired,
//! not created yet or being stopped meets none. Dependencies gate starts only: a running
//! dependent is never stopped or restarted because its dependency restarts (Compose
//! semantics). Nothing here does IO.

use drover_protocol::{
    ContainerSpec, Dependency, DependencyCondition, RestartPolicy, WorkloadSpec,
};

use super::observed::{Observed, ObservedContainer, ObservedWorkload, RunState};
use super::plan::should_restart;

/// The first dependency of workload `spec` that `observed` does not meet yet.
pub fn unmet_workload<'a>(
    spec: &'a WorkloadSpec,
    desired: &[WorkloadSpec],
    observed: &Observed,
) -> Option<&'a Dependency> {
    spec.depends_on.iter().find(|d| {
        let wanted = desired.iter().any(|w| w.name == d.name);
        let met = wanted
            && observed
                .workloads
                .get(&d.name)
                .is_some_and(|wl| workload_meets(wl, d.condition));
        !met
    })
}

/// The first dependency of container `c` (of the created workload `wl`) on a sibling
/// container that is not met yet.
pub fn unmet_container<'a>(c: &'a ContainerSpec, wl: &ObservedWorkload) -> Option<&'a Dependency> {
    c.depends_on.iter().find(|d| {
        let policy = wl.spec.restart_policy;
        !container_meets(wl.containers.get(&d.name), policy, d.condition)
    })
}

/// What keeps container `c` of the created workload `wl` from starting: a dependency of
/// its workload first, then one on a sibling.
pub fn unmet_for_start<'a>(
    c: &'a ContainerSpec,
    wl: &'a ObservedWorkload,
    desired: &[WorkloadSpec],
    observed: &Observed,
) -> Option<&'a Dependency> {
    unmet_workload(&wl.spec, desired, observed).or_else(|| unmet_container(c, wl))
}

fn workload_meets(wl: &ObservedWorkload, condition: DependencyCondition) -> bool {
    wl.stopping_since.is_none()
        && wl.spec.containers.iter().all(|c| {
            container_meets(
                wl.containers.get(&c.name),
                wl.spec.restart_policy,
                condition,
            )
        })
}

fn container_meets(
    obs: Option<&ObservedContainer>,
    policy: RestartPolicy,
    condition: DependencyCondition,
) -> bool {
    let Some(obs) = obs else { return false };
    let (completed, finished) = match &obs.run {
        RunState::Exited {
            code,
            oom_killed,
            killed_by_probe,
            ..
        } => {
            let ok = *code == 0 && !oom_killed && !killed_by_probe;
            (ok, ok && !should_restart(policy, *code, false))
        }
        _ => (false, false),
    };
    let running = matches!(obs.run, RunState::Running { .. });
    match condition {
        DependencyCondition::Started => running || finished,
        DependencyCondition::Healthy => (running && obs.ready) || finished,
        DependencyCondition::Completed => completed,
    }
}
