#![allow(clippy::unwrap_used)]

use drover_protocol::{ContainerStatus, Phase as RunPhase};

use super::*;
use crate::fleet::rollout::Count;

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// `web` at `revision`, its one container started at `started` by the device's clock.
fn status(revision: u64, ready: bool, restarts: u32, started: u64) -> DeviceStatus {
    let container = ContainerStatus {
        ready,
        restarts,
        started_at_ms: Some(started),
        ..ContainerStatus::new(n("main"), "oci:/x".into(), RunPhase::Running)
    };
    let w = WorkloadStatus {
        name: n("web"),
        phase: RunPhase::Running,
        restarts,
        containers: vec![container],
        last_error: None,
        reason: None,
        revision,
        rolled_back: None,
    };
    DeviceStatus {
        device: n("pi-1"),
        observed_generation: 1,
        time_ms: started,
        workloads: vec![w],
        capacity: Default::default(),
    }
}

/// Folds `statuses` (received at the given hub times) as the controller does.
fn fold(statuses: &[(u64, DeviceStatus)]) -> Reported {
    let mut reported = BTreeMap::new();
    for (at, st) in statuses {
        reported = reported_of(st, &reported, *at);
    }
    reported.remove(&n("web")).unwrap()
}

#[test]
fn min_ready_counts_from_when_the_hub_first_heard_the_revision_ready() {
    // Started at 0 s, ready from 12 s: with minReadySeconds 10 it is healthy at 22 s,
    // not at 10 s (found by review: the newest container start was taken as ready-since).
    let seen = [
        (1_000, status(2, false, 0, 0)),
        (12_000, status(2, true, 0, 0)),
        (17_000, status(2, true, 0, 0)),
    ];
    let r = fold(&seen);
    assert_eq!(r.ready_since_ms, Some(12_000));
    let strategy = Strategy {
        canary: Count::Devices(0),
        min_ready_ms: 10_000,
        ..Strategy::default()
    };
    let t = vec![n("pi-1")];
    let online = Observation {
        online: true,
        revision: 1,
        ..Observation::default()
    };
    let first = BTreeMap::from([(n("pi-1"), online)]);
    let rollout = step(&Rollout::new(1, 2, 0), &strategy, &t, &first, 0).rollout;
    assert_eq!(rollout.updated.len(), 1);
    let healthy_at = |now: u64| {
        let o = Observation {
            online: true,
            revision: r.revision,
            ready_since_ms: r.ready_since_ms,
            ..Observation::default()
        };
        let obs = BTreeMap::from([(n("pi-1"), o)]);
        step(&rollout, &strategy, &t, &obs, now).rollout.counts().1 == 1
    };
    assert!(!healthy_at(12_000));
    assert!(!healthy_at(21_999));
    assert!(healthy_at(22_000));
}

#[test]
fn ready_since_ignores_the_device_clock_and_resets_on_restart_revision_or_not_ready() {
    // A device clock far ahead changes nothing.
    let far = 9_000_000_000;
    let r = fold(&[
        (5_000, status(2, true, 0, far)),
        (6_000, status(2, true, 0, far)),
    ]);
    assert_eq!(r.ready_since_ms, Some(5_000));
    let reset =
        |last: DeviceStatus| fold(&[(5_000, status(2, true, 0, 0)), (9_000, last)]).ready_since_ms;
    assert_eq!(reset(status(2, true, 1, 0)), Some(9_000), "a restart");
    assert_eq!(
        reset(status(3, true, 0, 0)),
        Some(9_000),
        "another revision"
    );
    assert_eq!(reset(status(2, false, 0, 0)), None, "not ready");
    let back = fold(&[
        (5_000, status(2, true, 0, 0)),
        (6_000, status(2, false, 0, 0)),
        (7_000, status(2, true, 0, 0)),
    ]);
    assert_eq!(back.ready_since_ms, Some(7_000), "ready again: from then");
}
