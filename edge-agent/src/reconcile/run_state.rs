//! A container's [`RunState`] from what the agent recorded and what its shim last wrote:
//! the one place that reads a shim's status, so the planner and the status agree.

use drover_protocol::Health;

use super::observed::{RunState, StartErrorKind};
use crate::runtime::ShimView;
use crate::shim::status::ShimState;
use crate::state::ContainerRecord;

/// The run state of a container, from its record and its shim's view (`None`: no shim
/// status file).
pub fn run_state(rec: &ContainerRecord, view: Option<&ShimView>) -> RunState {
    let Some(v) = view else {
        return match &rec.start_error {
            Some(e) => RunState::StartFailed {
                at_boot_ms: e.at_boot_ms.unwrap_or(0),
                kind: e.kind,
                error: e.error.clone(),
            },
            None if rec.started => RunState::Lost,
            None => RunState::NotCreated,
        };
    };
    let s = &v.status;
    match s.state {
        ShimState::Starting if v.shim_alive => RunState::Starting,
        ShimState::Running if v.init_alive => RunState::Running {
            pid: s.pid.unwrap_or(0),
            started_at_ms: s.started_at_ms.unwrap_or(0),
        },
        // The container just ended and its shim is writing the final status.
        ShimState::Running if v.shim_alive => RunState::Starting,
        ShimState::Running | ShimState::Starting => RunState::Lost,
        ShimState::Exited => RunState::Exited {
            code: s.exit_code.unwrap_or(-1),
            oom_killed: s.oom_killed,
            killed_by_probe: s.probes.killed_by_probe.is_some(),
            started_at_ms: s.started_at_ms.unwrap_or(0),
            finished_at_ms: s.finished_at_ms.unwrap_or(0),
            ran_ms: ran_ms(s),
            finished_at_boot_ms: s.finished_at_boot_ms.unwrap_or(0),
        },
        ShimState::Failed => RunState::StartFailed {
            at_boot_ms: s.finished_at_boot_ms.unwrap_or(0),
            kind: StartErrorKind::Runtime,
            error: s
                .error
                .clone()
                .unwrap_or_else(|| "container failed to start".into()),
        },
    }
}

/// Whether a container in state `run` is ready: running, and its shim's probes say so or
/// it has none (`Health::None`; also what shims of older agents write, whose `ready` is
/// always false).
pub fn ready(run: &RunState, view: Option<&ShimView>) -> bool {
    matches!(run, RunState::Running { .. })
        && view.is_some_and(|v| v.status.probes.health == Health::None || v.status.probes.ready)
}

/// How long the container ran: from the boot clock when the shim wrote it, else from the
/// wall clock (older shims), never negative.
fn ran_ms(s: &crate::shim::status::ShimStatus) -> u64 {
    match (s.started_at_boot_ms, s.finished_at_boot_ms) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => s
            .finished_at_ms
            .unwrap_or(0)
            .saturating_sub(s.started_at_ms.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::status::ShimStatus;
    use crate::state::StartFailure;

    fn view(state: ShimState, shim_alive: bool, init_alive: bool) -> ShimView {
        ShimView {
            status: ShimStatus {
                shim_pid: 10,
                shim_start_ticks: 1,
                state,
                pid: Some(11),
                pid_start_ticks: Some(2),
                started_at_ms: Some(1_000),
                finished_at_ms: Some(4_000),
                started_at_boot_ms: Some(50),
                finished_at_boot_ms: Some(80),
                exit_code: Some(3),
                signal: None,
                oom_killed: false,
                error: Some("no such file".into()),
                probes: Default::default(),
            },
            shim_alive,
            init_alive,
        }
    }

    #[test]
    fn without_a_shim_status_the_record_decides() {
        let mut rec = ContainerRecord::default();
        assert_eq!(run_state(&rec, None), RunState::NotCreated);
        rec.started = true;
        assert_eq!(run_state(&rec, None), RunState::Lost);
        rec.start_error = Some(StartFailure {
            at_ms: 5,
            at_boot_ms: Some(7),
            kind: StartErrorKind::Spec,
            error: "bad user".into(),
        });
        assert_eq!(
            run_state(&rec, None),
            RunState::StartFailed {
                at_boot_ms: 7,
                kind: StartErrorKind::Spec,
                error: "bad user".into()
            }
        );
    }

    #[test]
    fn liveness_of_shim_and_init_decides_between_running_starting_and_lost() {
        let rec = ContainerRecord::default();
        let running = run_state(&rec, Some(&view(ShimState::Running, true, true)));
        assert!(matches!(running, RunState::Running { pid: 11, .. }));
        let ending = run_state(&rec, Some(&view(ShimState::Running, true, false)));
        assert_eq!(ending, RunState::Starting);
        let lost = run_state(&rec, Some(&view(ShimState::Running, false, false)));
        assert_eq!(lost, RunState::Lost);
        let dead_starter = run_state(&rec, Some(&view(ShimState::Starting, false, false)));
        assert_eq!(dead_starter, RunState::Lost);
    }

    #[test]
    fn an_exit_carries_boot_clock_times_and_a_failed_shim_is_a_runtime_error() {
        let rec = ContainerRecord::default();
        let exited = run_state(&rec, Some(&view(ShimState::Exited, false, false)));
        assert!(matches!(
            exited,
            RunState::Exited {
                code: 3,
                ran_ms: 30,
                finished_at_boot_ms: 80,
                ..
            }
        ));
        let failed = run_state(&rec, Some(&view(ShimState::Failed, false, false)));
        assert!(matches!(
            failed,
            RunState::StartFailed {
                kind: StartErrorKind::Runtime,
                at_boot_ms: 80,
                ..
            }
        ));
    }

    #[test]
    fn running_without_probes_is_ready_and_with_probes_when_they_say_so() {
        let rec = ContainerRecord::default();
        let mut v = view(ShimState::Running, true, true);
        let run = run_state(&rec, Some(&v));
        assert!(ready(&run, Some(&v)), "no probes: running is ready");
        v.status.probes.health = Health::Starting;
        assert!(!ready(&run, Some(&v)), "probes not decided yet");
        v.status.probes.health = Health::Healthy;
        v.status.probes.ready = true;
        assert!(ready(&run, Some(&v)));
        let exited = view(ShimState::Exited, false, false);
        assert!(!ready(&run_state(&rec, Some(&exited)), Some(&exited)));
        assert!(!ready(&RunState::Lost, None));
    }

    #[test]
    fn an_old_shim_without_boot_stamps_uses_the_wall_clock_for_the_run_time() {
        let mut v = view(ShimState::Exited, false, false);
        v.status.started_at_boot_ms = None;
        v.status.finished_at_boot_ms = None;
        let st = run_state(&ContainerRecord::default(), Some(&v));
        assert!(matches!(
            st,
            RunState::Exited {
                ran_ms: 3_000,
                finished_at_boot_ms: 0,
                ..
            }
        ));
    }
}
