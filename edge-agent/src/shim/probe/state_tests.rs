//! The probe state machine on a fake clock (milliseconds since the container started).

use drover_protocol::{Health, Probe, ProbeAction};

use super::*;

fn probe(delay: u32, period: u32, timeout: u32, success: u32, failure: u32) -> Probe {
    Probe {
        action: ProbeAction::TcpSocket { port: 80 },
        initial_delay_s: delay,
        period_s: period,
        timeout_s: timeout,
        success_threshold: success,
        failure_threshold: failure,
    }
}

fn machine(
    liveness: Option<Probe>,
    readiness: Option<Probe>,
    startup: Option<Probe>,
) -> ProbeMachine {
    ProbeMachine::new(&ContainerProbes {
        liveness,
        readiness,
        startup,
    })
    .expect("has probes")
}

fn fail(why: &str) -> Outcome {
    Outcome::Failure(why.to_owned())
}

/// Starts and finishes `kind` at `at` with `outcome`; returns a kill reason if any.
fn run(m: &mut ProbeMachine, kind: Kind, at: Ms, outcome: Outcome) -> Option<KillReason> {
    assert!(m.due(at).contains(&kind), "{kind:?} not due at {at}");
    m.started(kind, at);
    m.finished(kind, at + 5, outcome)
}

#[test]
fn no_probe_means_no_machine() {
    assert!(ProbeMachine::new(&ContainerProbes::default()).is_none());
}

#[test]
fn the_first_run_waits_for_the_initial_delay_then_every_period() {
    let mut m = machine(Some(probe(5, 10, 1, 1, 3)), None, None);
    assert_eq!(m.due(4_999), vec![]);
    assert_eq!(m.next_wake(), Some(5_000));
    assert_eq!(m.status().health, Health::Starting);
    assert_eq!(run(&mut m, Kind::Liveness, 5_000, Outcome::Success), None);
    assert_eq!(m.status().health, Health::Healthy);
    assert_eq!(m.next_wake(), Some(15_000));
    assert_eq!(m.due(14_999), vec![]);
    assert_eq!(m.due(15_000), vec![Kind::Liveness]);
}

#[test]
fn liveness_kills_after_failure_threshold_consecutive_failures_only() {
    let mut m = machine(Some(probe(0, 1, 1, 1, 3)), None, None);
    assert_eq!(run(&mut m, Kind::Liveness, 0, fail("HTTP 500")), None);
    assert_eq!(run(&mut m, Kind::Liveness, 1_000, fail("HTTP 500")), None);
    // A success in between starts the count again.
    assert_eq!(run(&mut m, Kind::Liveness, 2_000, Outcome::Success), None);
    assert_eq!(m.status().failures, 0);
    assert_eq!(run(&mut m, Kind::Liveness, 3_000, fail("HTTP 500")), None);
    assert_eq!(run(&mut m, Kind::Liveness, 4_000, fail("HTTP 500")), None);
    let st = m.status();
    assert_eq!(
        (st.health, st.failures, st.ready),
        (Health::Healthy, 2, true)
    );
    assert_eq!(st.message.as_deref(), Some("liveness probe: HTTP 500"));
    let kill = run(&mut m, Kind::Liveness, 5_000, fail("HTTP 500"));
    assert_eq!(
        kill.as_deref(),
        Some("liveness probe failed 3 times: HTTP 500")
    );
    let st = m.status();
    assert_eq!(st.health, Health::Unhealthy);
    assert_eq!(st.killed_by_probe, kill);
    assert!(!st.ready);
    // Nothing runs after a kill was asked for.
    assert_eq!(m.due(60_000), vec![]);
    assert_eq!(m.next_wake(), None);
}

#[test]
fn readiness_starts_not_ready_and_flips_by_thresholds_without_a_kill() {
    let mut m = machine(None, Some(probe(0, 1, 1, 2, 2)), None);
    let st = m.status();
    assert_eq!((st.health, st.ready), (Health::Starting, false));
    assert_eq!(run(&mut m, Kind::Readiness, 0, Outcome::Success), None);
    assert!(!m.status().ready, "successThreshold 2 needs two successes");
    assert_eq!(run(&mut m, Kind::Readiness, 1_000, Outcome::Success), None);
    let st = m.status();
    assert_eq!((st.health, st.ready), (Health::Healthy, true));
    assert_eq!(run(&mut m, Kind::Readiness, 2_000, fail("no")), None);
    assert!(m.status().ready, "one failure is below failureThreshold 2");
    assert_eq!(run(&mut m, Kind::Readiness, 3_000, fail("no")), None);
    let st = m.status();
    assert_eq!((st.health, st.ready), (Health::Unhealthy, false));
    assert_eq!(st.killed_by_probe, None);
    assert_eq!(run(&mut m, Kind::Readiness, 4_000, Outcome::Success), None);
    assert_eq!(run(&mut m, Kind::Readiness, 5_000, Outcome::Success), None);
    let st = m.status();
    assert_eq!((st.health, st.ready), (Health::Healthy, true));
    assert_eq!(st.message.as_deref(), Some("readiness probe: no"), "kept");
}

#[test]
fn startup_holds_liveness_and_readiness_off_until_it_succeeds_once() {
    let mut m = machine(
        Some(probe(0, 1, 1, 1, 1)),
        Some(probe(0, 1, 1, 1, 3)),
        Some(probe(0, 1, 1, 1, 10)),
    );
    assert_eq!(m.due(0), vec![Kind::Startup]);
    for at in [0, 1_000, 2_000] {
        assert_eq!(run(&mut m, Kind::Startup, at, fail("refused")), None);
        assert_eq!(m.due(at + 1_000), vec![Kind::Startup]);
        let st = m.status();
        assert_eq!((st.health, st.ready), (Health::Starting, false));
    }
    assert_eq!(run(&mut m, Kind::Startup, 3_000, Outcome::Success), None);
    // The others run now (their initial delay is long past); startup never again.
    assert_eq!(m.due(3_005), vec![Kind::Liveness, Kind::Readiness]);
    assert_eq!(m.due(100_000), vec![Kind::Liveness, Kind::Readiness]);
    assert_eq!(run(&mut m, Kind::Readiness, 3_005, Outcome::Success), None);
    let st = m.status();
    assert_eq!((st.health, st.ready), (Health::Healthy, true));
}

#[test]
fn startup_failing_its_threshold_kills() {
    let mut m = machine(Some(probe(0, 1, 1, 1, 1)), None, Some(probe(0, 1, 1, 1, 2)));
    assert_eq!(run(&mut m, Kind::Startup, 0, fail("refused")), None);
    let kill = run(&mut m, Kind::Startup, 1_000, fail("refused"));
    assert_eq!(
        kill.as_deref(),
        Some("startup probe failed 2 times: refused")
    );
    assert_eq!(m.status().health, Health::Unhealthy);
}

#[test]
fn a_run_past_its_timeout_is_overdue_and_the_next_waits_for_the_period() {
    let mut m = machine(Some(probe(0, 10, 2, 1, 3)), None, None);
    m.started(Kind::Liveness, 0);
    assert_eq!(m.due(0), vec![], "in flight");
    assert_eq!(m.next_wake(), Some(2_000));
    assert_eq!(m.overdue(1_999), vec![]);
    assert_eq!(m.overdue(2_000), vec![Kind::Liveness]);
    assert_eq!(
        m.finished(Kind::Liveness, 2_000, fail("timed out after 2s")),
        None
    );
    assert_eq!(m.status().failures, 1);
    assert_eq!(m.next_wake(), Some(10_000));
    // A late result of a run already ended changes nothing.
    assert_eq!(m.finished(Kind::Liveness, 2_100, Outcome::Success), None);
    assert_eq!(m.status().failures, 1);
}

#[test]
fn a_run_longer_than_the_period_delays_the_next_one() {
    let mut m = machine(Some(probe(0, 1, 5, 1, 3)), None, None);
    m.started(Kind::Liveness, 0);
    assert_eq!(m.finished(Kind::Liveness, 3_000, Outcome::Success), None);
    assert_eq!(m.next_wake(), Some(3_000));
}

#[test]
fn messages_are_bounded_on_a_character_boundary() {
    let long = "é".repeat(400);
    let b = bounded(&long);
    assert!(b.len() <= MAX_PROBE_MESSAGE);
    assert!(b.len() >= MAX_PROBE_MESSAGE - 1);
}
