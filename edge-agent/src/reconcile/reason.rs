//! The reason a workload's status gives when its phase does not say enough: a crash loop
//! (with the next try) or a wait for a dependency. Derived from the same snapshot and the
//! same rules as the plan ([`next_start`], [`super::depends`]), so `ps` says exactly why
//! the agent does not start something. No IO, no clock reads.

use drover_protocol::{WorkloadReason, WorkloadSpec};

use super::depends::{unmet_for_start, unmet_workload};
use super::observed::{Observed, ObservedContainer, RunState};
use super::plan::{NextStart, image_missing, next_start};
use crate::clock::BootMs;

/// Why desired workload `spec` is not simply running at `now` (boot clock), if there is
/// more to say than its phase. A crash loop wins over a wait. The next try of a crash loop
/// is due on the boot clock; `wall_now` (the wall clock read with `now`) turns it into
/// Unix ms, rounded up to the second so that the report stays the same from pass to pass.
pub fn workload_reason(
    spec: &WorkloadSpec,
    desired: &[WorkloadSpec],
    observed: &Observed,
    now: BootMs,
    wall_now: u64,
) -> Option<WorkloadReason> {
    let Some(wl) = observed.workloads.get(&spec.name) else {
        return unmet_workload(spec, desired, observed).map(|d| {
            WorkloadReason::WaitingForDependency {
                dependency: d.clone(),
            }
        });
    };
    if wl.stopping_since.is_some() {
        return None;
    }
    let not_created = ObservedContainer {
        run: RunState::NotCreated,
        restarts: 0,
        backoff_level: 0,
        probes: Default::default(),
        restart_requested: false,
        ready: false,
    };
    let mut crash_due: Option<BootMs> = None;
    let mut waiting = None;
    for c in &wl.spec.containers {
        let obs = wl.containers.get(&c.name).unwrap_or(&not_created);
        if image_missing(obs) {
            continue; // waits for its image, which the phase and error say
        }
        match next_start(wl.spec.restart_policy, obs, now) {
            NextStart::At { due, level } if level >= 1 => {
                crash_due = Some(crash_due.map_or(due, |d| d.min(due)));
            }
            NextStart::Now { .. } if waiting.is_none() => {
                waiting = unmet_for_start(c, wl, desired, observed).cloned();
            }
            _ => {}
        }
    }
    if let Some(due) = crash_due {
        let at = wall_now.saturating_add(due.saturating_sub(now));
        return Some(WorkloadReason::CrashLoopBackOff {
            next_retry_ms: at.div_ceil(1000).saturating_mul(1000),
        });
    }
    waiting.map(|dependency| WorkloadReason::WaitingForDependency { dependency })
}

#[cfg(test)]
mod tests {
    use drover_protocol::{ContainerSpec, Dependency, DependencyCondition, ImageRef, Name};

    use super::*;
    use crate::reconcile::ObservedWorkload;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn spec(name: &str, deps: &[&str]) -> WorkloadSpec {
        let c = ContainerSpec::new(n("app"), ImageRef::new("oci:/a").unwrap());
        let mut w = WorkloadSpec::new(n(name), vec![c]);
        w.depends_on = deps
            .iter()
            .map(|d| Dependency {
                name: n(d),
                condition: DependencyCondition::Started,
            })
            .collect();
        w
    }

    fn with(o: &mut Observed, spec: &WorkloadSpec, run: RunState, level: u32) {
        let obs = ObservedContainer {
            ready: matches!(run, RunState::Running { .. }),
            run,
            restarts: level,
            backoff_level: level,
            probes: Default::default(),
            restart_requested: false,
        };
        o.workloads.insert(
            spec.name.clone(),
            ObservedWorkload {
                spec: spec.clone(),
                containers: [(n("app"), obs)].into(),
                stopping_since: None,
            },
        );
    }

    fn crashed(at: BootMs) -> RunState {
        RunState::Exited {
            code: 1,
            oom_killed: false,
            killed_by_probe: false,
            started_at_ms: 0,
            finished_at_ms: 0,
            ran_ms: 10,
            finished_at_boot_ms: at,
        }
    }

    #[test]
    fn a_workload_not_created_for_its_dependency_waits_for_it() {
        let (a, b) = (spec("a", &[]), spec("b", &["a"]));
        let desired = [a.clone(), b.clone()];
        let o = Observed::default();
        let r = workload_reason(&b, &desired, &o, 0, 0);
        assert_eq!(
            r,
            Some(WorkloadReason::WaitingForDependency {
                dependency: b.depends_on[0].clone()
            })
        );
        assert_eq!(workload_reason(&a, &desired, &o, 0, 0), None);
    }

    #[test]
    fn a_lost_container_whose_dependency_is_down_waits_for_it() {
        let (a, b) = (spec("a", &[]), spec("b", &["a"]));
        let desired = [a.clone(), b.clone()];
        let mut o = Observed::default();
        with(&mut o, &a, RunState::Lost, 0);
        with(&mut o, &b, RunState::Lost, 0);
        assert!(matches!(
            workload_reason(&b, &desired, &o, 0, 0),
            Some(WorkloadReason::WaitingForDependency { .. })
        ));
        assert_eq!(workload_reason(&a, &desired, &o, 0, 0), None);
    }

    #[test]
    fn the_first_quick_failure_is_back_off_and_the_second_a_crash_loop_with_its_wall_time() {
        let a = spec("a", &[]);
        let desired = [a.clone()];
        let mut o = Observed::default();
        with(&mut o, &a, crashed(1_000), 0);
        assert_eq!(workload_reason(&a, &desired, &o, 1_500, 0), None);
        // Second failure: level 1, 2 s back-off from 1 000 → due at boot 3 000.
        with(&mut o, &a, crashed(1_000), 1);
        let wall_now = 1_700_000_000_400;
        assert_eq!(
            workload_reason(&a, &desired, &o, 1_500, wall_now),
            Some(WorkloadReason::CrashLoopBackOff {
                next_retry_ms: 1_700_000_002_000
            }),
            "1.5 s after wall_now, rounded up to the second"
        );
        assert_eq!(
            workload_reason(&a, &desired, &o, 3_000, wall_now),
            None,
            "due now: it is being restarted"
        );
    }

    #[test]
    fn a_stopping_workload_has_no_reason() {
        let a = spec("a", &[]);
        let mut o = Observed::default();
        with(&mut o, &a, crashed(1_000), 3);
        o.workloads.get_mut(&n("a")).unwrap().stopping_since = Some(1);
        assert_eq!(workload_reason(&a, &[], &o, 1_500, 0), None);
    }
}
