//! Phases for status reports, derived from the same snapshot the planner sees, so that
//! what the device reports always agrees with what it will do next.

use drover_protocol::{ContainerSpec, Phase, WorkloadSpec};

use super::observed::{ImageState, Observed, ObservedContainer, RunState, StartErrorKind};
use super::plan::should_restart;

/// Phase and error of one container of a created workload; `stopping` while the
/// workload's stop is under way (then every container is `Stopping`).
pub fn container_phase(
    spec: &WorkloadSpec,
    obs: Option<&ObservedContainer>,
    stopping: bool,
) -> (Phase, Option<String>) {
    let Some(obs) = obs else {
        return (Phase::Pending, None);
    };
    match &obs.run {
        // Being removed or replaced: whatever its containers do now is not a failure.
        _ if stopping => (Phase::Stopping, None),
        RunState::NotCreated | RunState::Starting | RunState::Lost => (Phase::Pending, None),
        RunState::Running { .. } => (Phase::Running, None),
        RunState::StartFailed { error, kind, .. } if kind.is_permanent() => (
            Phase::Error,
            Some(format!("{error} (not retried until the workload changes)")),
        ),
        RunState::StartFailed {
            error,
            kind: StartErrorKind::Image,
            ..
        } => (
            Phase::Error,
            Some(format!("{error} (pulled again, then started)")),
        ),
        RunState::StartFailed { error, .. } => (
            Phase::Error,
            Some(format!("{error} (retried with back-off)")),
        ),
        RunState::Exited {
            code,
            oom_killed,
            killed_by_probe,
            ..
        } => {
            let killed = *oom_killed || *killed_by_probe;
            let why = if *oom_killed {
                Some("killed: out of memory".to_string())
            } else if *code != 0 {
                Some(format!("exited with code {code}"))
            } else {
                None
            };
            let phase = if should_restart(spec.restart_policy, *code, killed) {
                Phase::BackOff
            } else if *code == 0 && !killed {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
            (phase, why)
        }
    }
}

/// The problem, if any, that keeps `containers`' images from being ready.
pub fn image_problem(containers: &[ContainerSpec], observed: &Observed) -> Option<String> {
    containers
        .iter()
        .find_map(|c| match observed.images.get(c.image.as_str()) {
            Some(ImageState::Failed { error, .. }) => Some(format!(
                "image {}: {error} (tried again every {} s)",
                c.image,
                super::plan::IMAGE_RETRY_MS / 1000
            )),
            _ => None,
        })
}

/// One phase for a whole workload: the most urgent of its containers' phases.
pub fn workload_phase(phases: impl IntoIterator<Item = Phase>) -> Phase {
    const URGENCY: [Phase; 7] = [
        Phase::Error,
        Phase::Stopping,
        Phase::BackOff,
        Phase::Failed,
        Phase::Pending,
        Phase::Running,
        Phase::Succeeded,
    ];
    let phases: Vec<Phase> = phases.into_iter().collect();
    URGENCY
        .into_iter()
        .find(|p| phases.contains(p))
        .unwrap_or(Phase::Pending)
}

#[cfg(test)]
mod tests {
    use drover_protocol::{Name, NetworkMode, RestartPolicy};

    use super::*;

    fn spec(policy: RestartPolicy) -> WorkloadSpec {
        WorkloadSpec {
            name: Name::new("w").unwrap(),
            containers: vec![],
            restart_policy: policy,
            network: NetworkMode::Host,
            volumes: vec![],
            stop_grace_ms: 0,
            labels: Default::default(),
            depends_on: vec![],
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        }
    }

    fn exited(code: i32, oom: bool) -> ObservedContainer {
        let run = RunState::Exited {
            code,
            oom_killed: oom,
            killed_by_probe: false,
            started_at_ms: 0,
            finished_at_ms: 1,
            ran_ms: 1,
            finished_at_boot_ms: 1,
        };
        ObservedContainer {
            run,
            restarts: 0,
            backoff_level: 0,
            probes: Default::default(),
            restart_requested: false,
            ready: false,
        }
    }

    #[test]
    fn exits_map_to_phases_by_policy() {
        let always = spec(RestartPolicy::Always);
        let never = spec(RestartPolicy::Never);
        assert_eq!(
            container_phase(&always, Some(&exited(0, false)), false).0,
            Phase::BackOff
        );
        assert_eq!(
            container_phase(&never, Some(&exited(0, false)), false),
            (Phase::Succeeded, None)
        );
        assert_eq!(
            container_phase(&never, Some(&exited(2, false)), false).0,
            Phase::Failed
        );
        let (phase, why) = container_phase(&always, Some(&exited(137, true)), false);
        assert_eq!(
            (phase, why.as_deref()),
            (Phase::BackOff, Some("killed: out of memory"))
        );
    }

    #[test]
    fn a_stopping_workload_shows_its_running_containers_as_stopping_and_permanent_errors_say_so() {
        let always = spec(RestartPolicy::Always);
        let running = ObservedContainer {
            run: RunState::Running {
                pid: 4,
                started_at_ms: 1,
            },
            restarts: 0,
            backoff_level: 0,
            probes: Default::default(),
            restart_requested: false,
            ready: true,
        };
        assert_eq!(
            container_phase(&always, Some(&running), true).0,
            Phase::Stopping
        );
        assert_eq!(
            container_phase(&always, Some(&running), false).0,
            Phase::Running
        );
        assert_eq!(
            container_phase(&always, Some(&exited(143, false)), true),
            (Phase::Stopping, None),
            "killed by its stop: no failure, no back-off"
        );
        let bad = ObservedContainer {
            run: RunState::StartFailed {
                at_boot_ms: 1,
                kind: crate::reconcile::StartErrorKind::Spec,
                error: "working directory \"srv\" must be an absolute path".into(),
            },
            restarts: 0,
            backoff_level: 0,
            probes: Default::default(),
            restart_requested: false,
            ready: false,
        };
        let (phase, why) = container_phase(&always, Some(&bad), false);
        assert_eq!(phase, Phase::Error);
        assert!(
            why.unwrap()
                .contains("not retried until the workload changes")
        );
    }

    #[test]
    fn the_most_urgent_phase_wins() {
        assert_eq!(
            workload_phase([Phase::Running, Phase::Running]),
            Phase::Running
        );
        assert_eq!(
            workload_phase([Phase::Running, Phase::BackOff]),
            Phase::BackOff
        );
        assert_eq!(
            workload_phase([Phase::Succeeded, Phase::Running]),
            Phase::Running
        );
        assert_eq!(workload_phase([Phase::Error, Phase::Running]), Phase::Error);
        assert_eq!(workload_phase([]), Phase::Pending);
    }
}
