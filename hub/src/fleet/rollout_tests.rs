#![allow(clippy::unwrap_used)]

use super::*;

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn devices(k: usize) -> Vec<Name> {
    (1..=k).map(|i| n(&format!("pi-{i}"))).collect()
}

fn strategy() -> Strategy {
    Strategy {
        canary: Count::Devices(1),
        batch_size: Count::Devices(2),
        max_unavailable: None,
        health_timeout_ms: 60_000,
        failure_threshold: Count::Devices(1),
        pause_after_canary: false,
        min_ready_ms: 0,
    }
}

/// Every target online, running `revision`, ready since `ready_since` (None: not ready).
fn world(
    targets: &[Name],
    revision: impl Fn(&Name) -> u64,
    ready_since: Option<u64>,
) -> BTreeMap<Name, Observation> {
    targets
        .iter()
        .map(|d| {
            let o = Observation {
                online: true,
                revision: revision(d),
                ready_since_ms: ready_since,
                ..Observation::default()
            };
            (d.clone(), o)
        })
        .collect()
}

/// What devices report when each runs what the rollout gives it, ready since `t`.
fn obeying(r: &Rollout, targets: &[Name], t: u64) -> BTreeMap<Name, Observation> {
    world(targets, |d| r.revision_for(d), Some(t))
}

fn updates(step: &Step) -> Vec<(u32, Vec<Name>)> {
    step.decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Update { batch, devices } => Some((*batch, devices.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_good_revision_goes_canary_first_then_batches_then_completes() {
    let t = devices(5);
    let s = strategy();
    let r = Rollout::new(1, 2, 0);
    let st = step(&r, &s, &t, &obeying(&r, &t, 0), 0);
    assert_eq!(updates(&st), vec![(0, vec![n("pi-1")])]);
    // The canary has not reported the new revision yet: nothing else moves.
    let r = st.rollout;
    let st = step(&r, &s, &t, &world(&t, |_| 1, Some(0)), 1_000);
    assert_eq!(updates(&st), vec![]);
    let st = step(&r, &s, &t, &obeying(&r, &t, 1_000), 2_000);
    assert!(
        st.decisions
            .contains(&Decision::Healthy { device: n("pi-1") })
    );
    assert_eq!(updates(&st), vec![(1, vec![n("pi-2"), n("pi-3")])]);
    let r = st.rollout;
    let st = step(&r, &s, &t, &obeying(&r, &t, 2_000), 3_000);
    assert_eq!(updates(&st), vec![(2, vec![n("pi-4"), n("pi-5")])]);
    let r = st.rollout;
    let st = step(&r, &s, &t, &obeying(&r, &t, 3_000), 4_000);
    assert!(st.decisions.contains(&Decision::Complete), "{st:?}");
    assert_eq!(st.rollout.phase, Phase::Complete);
    assert_eq!(st.rollout.counts(), (5, 5, 0));
    assert!(t.iter().all(|d| st.rollout.revision_for(d) == 2));
    // Terminal: further steps change nothing.
    let again = step(&st.rollout, &s, &t, &BTreeMap::new(), 9_000_000);
    assert_eq!(again.rollout, st.rollout);
    assert!(again.decisions.is_empty());
}

#[test]
fn a_bad_revision_stops_at_the_canary_and_rolls_back_before_others_run_it() {
    let t = devices(5);
    let s = strategy();
    let r = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0).rollout;
    let mut bad = obeying(&r, &t, 0);
    let canary = bad.get_mut(&n("pi-1")).unwrap();
    canary.ready_since_ms = None;
    canary.problem = Some("liveness probe failed 3 times: HTTP 500".into());
    // Before the timeout: still updating, nothing else starts.
    let st = step(&r, &s, &t, &bad, 59_999);
    assert!(st.decisions.is_empty(), "{st:?}");
    let st = step(&st.rollout, &s, &t, &bad, 60_000);
    let Phase::RolledBack { reason } = &st.rollout.phase else {
        panic!("{st:?}")
    };
    assert_eq!(
        reason,
        "1 of 1 updated devices failed: pi-1: not healthy within 60s: liveness probe failed 3 times: HTTP 500"
    );
    assert!(t.iter().all(|d| st.rollout.revision_for(d) == 1));
    assert_eq!(
        st.rollout.updated.len(),
        1,
        "the others never got revision 2"
    );
}

#[test]
fn a_device_that_rolled_back_by_itself_is_a_failure_of_the_revision() {
    let t = devices(3);
    let s = strategy();
    let r = step(&Rollout::new(4, 5, 0), &s, &t, &world(&t, |_| 4, None), 0).rollout;
    let mut obs = world(&t, |_| 4, Some(0));
    obs.get_mut(&n("pi-1")).unwrap().rolled_back = Some((5, "CrashLoopBackOff".into()));
    let st = step(&r, &s, &t, &obs, 1_000);
    assert!(matches!(st.rollout.phase, Phase::RolledBack { .. }));
    assert!(st.decisions.contains(&Decision::Failed {
        device: n("pi-1"),
        reason: "the device rolled back by itself: CrashLoopBackOff".into()
    }));
    // A rollback of an older revision says nothing about this one.
    obs.get_mut(&n("pi-1")).unwrap().rolled_back = Some((3, "old".into()));
    let st = step(&r, &s, &t, &obs, 1_000);
    assert_eq!(st.rollout.phase, Phase::Progressing);
}

#[test]
fn offline_devices_never_fail_and_get_the_revision_when_back() {
    let t = devices(4);
    let s = strategy();
    let mut obs = world(&t, |_| 1, Some(0));
    obs.get_mut(&n("pi-2")).unwrap().online = false;
    obs.remove(&n("pi-4")); // never seen at all
    let st = step(&Rollout::new(1, 2, 0), &s, &t, &obs, 0);
    assert_eq!(updates(&st), vec![(0, vec![n("pi-1")])]);
    // The canary goes offline right after its update (found end to end: a kill -9 of its
    // agent let the next batch start). Nothing proved the revision: the batch waits for
    // it, however long, and its health timeout does not run while it is away.
    obs.get_mut(&n("pi-1")).unwrap().online = false;
    let st = step(&st.rollout, &s, &t, &obs, 500_000);
    assert!(st.decisions.is_empty(), "{st:?}");
    assert_eq!(st.rollout.phase, Phase::Progressing);
    // It returns running revision 2, ready: healthy, and the next batch starts with the
    // online devices only.
    let o = obs.get_mut(&n("pi-1")).unwrap();
    (o.online, o.revision, o.ready_since_ms) = (true, 2, Some(500_000));
    let st = step(&st.rollout, &s, &t, &obs, 501_000);
    assert!(
        st.decisions
            .contains(&Decision::Healthy { device: n("pi-1") })
    );
    assert_eq!(
        updates(&st),
        vec![(1, vec![n("pi-3")])],
        "offline pi-2, pi-4 skipped"
    );
    // pi-3 drops offline before reporting: the revision is proven on pi-1, so it no
    // longer holds the rollout.
    obs.get_mut(&n("pi-3")).unwrap().online = false;
    let st = step(&st.rollout, &s, &t, &obs, 502_000);
    assert_eq!(st.rollout.phase, Phase::Complete, "{st:?}");
    assert_eq!(
        st.rollout.counts(),
        (2, 1, 0),
        "pi-3 is neither healthy nor failed"
    );
    // Complete: whoever returns gets revision 2.
    assert_eq!(st.rollout.revision_for(&n("pi-4")), 2);
}

#[test]
fn an_offline_updated_device_holds_its_batch_until_the_revision_is_proven() {
    let t = devices(5);
    let s = Strategy {
        canary: Count::Devices(0),
        ..strategy()
    };
    let r = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0).rollout;
    assert_eq!(r.updated.len(), 2);
    // Both look offline (a hub restart: devices are offline until they report).
    let mut obs = world(&t, |_| 1, None);
    for d in ["pi-1", "pi-2"] {
        obs.get_mut(&n(d)).unwrap().online = false;
    }
    let st = step(&r, &s, &t, &obs, 30_000);
    assert!(st.decisions.is_empty(), "{st:?}");
    // pi-1 reports the revision healthy, pi-2 stays away: proven, the next batch starts.
    let o = obs.get_mut(&n("pi-1")).unwrap();
    (o.online, o.revision, o.ready_since_ms) = (true, 2, Some(30_000));
    let st = step(&st.rollout, &s, &t, &obs, 31_000);
    assert_eq!(updates(&st), vec![(1, vec![n("pi-3"), n("pi-4")])]);
}

#[test]
fn an_updated_device_returning_from_offline_gets_a_fresh_health_timeout() {
    let t = devices(2);
    let s = Strategy {
        canary: Count::Devices(0),
        batch_size: Count::Devices(1),
        ..strategy()
    };
    let r = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0).rollout;
    let mut obs = world(&t, |_| 1, None);
    obs.get_mut(&n("pi-1")).unwrap().online = false;
    let r = step(&r, &s, &t, &obs, 100_000).rollout;
    obs.get_mut(&n("pi-1")).unwrap().online = true;
    let st = step(&r, &s, &t, &obs, 159_999);
    assert_eq!(
        st.rollout.counts().2,
        0,
        "timeout runs from 100 s, when it was last away"
    );
    let st = step(&st.rollout, &s, &t, &obs, 160_000);
    assert!(matches!(st.rollout.phase, Phase::RolledBack { .. }));
}

#[test]
fn the_canary_pause_waits_for_resume_and_pause_undo_work_mid_batch() {
    let t = devices(5);
    let s = Strategy {
        pause_after_canary: true,
        ..strategy()
    };
    let r = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0).rollout;
    let st = step(&r, &s, &t, &obeying(&r, &t, 0), 1_000);
    assert_eq!(st.rollout.phase, Phase::Paused);
    assert!(st.decisions.contains(&Decision::Paused));
    let st = step(&st.rollout, &s, &t, &obeying(&r, &t, 0), 2_000);
    assert!(updates(&st).is_empty(), "paused: no batch");
    let r = resume(&st.rollout);
    let st = step(&r, &s, &t, &obeying(&r, &t, 0), 3_000);
    assert_eq!(updates(&st), vec![(1, vec![n("pi-2"), n("pi-3")])]);
    // Paused by hand in the middle of a batch, then undone.
    let paused = pause(&st.rollout);
    let st = step(&paused, &s, &t, &obeying(&paused, &t, 3_000), 4_000);
    assert!(updates(&st).is_empty());
    assert_eq!(st.rollout.phase, Phase::Paused);
    let undone = undo(&st.rollout, "rollout undo");
    assert!(t.iter().all(|d| undone.revision_for(d) == 1));
    let after = step(&undone, &s, &t, &BTreeMap::new(), 5_000);
    assert_eq!(after.rollout, undone);
}

#[test]
fn failure_thresholds_count_devices_or_a_share_of_them() {
    let t = devices(5);
    let s = Strategy {
        canary: Count::Devices(0),
        batch_size: Count::Percent(100),
        failure_threshold: Count::Percent(40), // 2 of 5
        ..strategy()
    };
    let r = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0).rollout;
    assert_eq!(r.updated.len(), 5);
    let mut obs = world(&t, |_| 2, Some(0));
    obs.get_mut(&n("pi-1")).unwrap().ready_since_ms = None;
    let st = step(&r, &s, &t, &obs, 60_000);
    assert_eq!(st.rollout.counts(), (5, 4, 1));
    assert_eq!(
        st.rollout.phase,
        Phase::Complete,
        "one failure of five is under 40 %"
    );
    obs.get_mut(&n("pi-2")).unwrap().ready_since_ms = None;
    let st = step(&r, &s, &t, &obs, 60_000);
    let Phase::RolledBack { reason } = &st.rollout.phase else {
        panic!("{st:?}")
    };
    assert!(
        reason.starts_with("2 of 5 updated devices failed: pi-1: "),
        "{reason}"
    );
}

#[test]
fn min_ready_and_max_unavailable_shape_health_and_batches() {
    let t = devices(6);
    let s = Strategy {
        canary: Count::Devices(0),
        batch_size: Count::Percent(50),
        max_unavailable: Some(Count::Devices(2)),
        min_ready_ms: 10_000,
        ..strategy()
    };
    let st = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0);
    assert_eq!(
        updates(&st),
        vec![(0, vec![n("pi-1"), n("pi-2")])],
        "3 capped to 2"
    );
    let r = st.rollout;
    let st = step(&r, &s, &t, &obeying(&r, &t, 5_000), 14_999);
    assert_eq!(st.rollout.counts(), (2, 0, 0), "ready for less than 10 s");
    let st = step(&r, &s, &t, &obeying(&r, &t, 5_000), 15_000);
    assert_eq!(st.rollout.counts(), (4, 2, 0));
    assert_eq!(Count::Percent(10).of(5), 1);
    assert_eq!(Count::Percent(25).of(8), 2);
}

#[test]
fn with_every_device_offline_an_unproven_revision_waits_instead_of_completing() {
    let t = devices(3);
    let s = strategy();
    let mut obs = world(&t, |_| 1, None);
    for o in obs.values_mut() {
        o.online = false;
    }
    let st = step(&Rollout::new(1, 2, 0), &s, &t, &obs, 0);
    assert_eq!(st.rollout.phase, Phase::Progressing, "{st:?}");
    assert!(st.decisions.is_empty());
    assert!(t.iter().all(|d| st.rollout.revision_for(d) == 1));
    // One comes back: it becomes the canary.
    obs.get_mut(&n("pi-2")).unwrap().online = true;
    let st = step(&st.rollout, &s, &t, &obs, 1_000);
    assert_eq!(updates(&st), vec![(0, vec![n("pi-2")])]);
}

#[test]
fn an_updated_device_that_goes_offline_before_reporting_never_completes_the_rollout() {
    // Found end to end: a single-device fleet's canary took the revision and lost its
    // hub; the rollout was called Complete though nothing had proven the revision, and
    // the device's own rollback reported later was ignored.
    let t = devices(1);
    let s = strategy();
    let r = step(
        &Rollout::new(1, 2, 0),
        &s,
        &t,
        &world(&t, |_| 1, Some(0)),
        0,
    )
    .rollout;
    assert_eq!(r.revision_for(&n("pi-1")), 2);
    let mut obs = world(&t, |_| 2, None);
    obs.get_mut(&n("pi-1")).unwrap().online = false;
    let st = step(&r, &s, &t, &obs, 500_000);
    assert_eq!(st.rollout.phase, Phase::Progressing, "{st:?}");
    assert!(st.decisions.is_empty());
    // It returns having rolled back by itself: the rollout rolls back.
    let o = obs.get_mut(&n("pi-1")).unwrap();
    o.online = true;
    o.revision = 1;
    o.rolled_back = Some((2, "not healthy within 60s: readiness probe".into()));
    let st = step(&st.rollout, &s, &t, &obs, 510_000);
    assert!(
        matches!(st.rollout.phase, Phase::RolledBack { .. }),
        "{st:?}"
    );
}

#[test]
fn a_pause_with_every_target_updated_and_judged_still_completes() {
    // Found by review: `N/N healthy · Paused`, and `apply --wait` hung.
    let t = devices(3);
    let s = strategy();
    let r = step(&Rollout::new(1, 2, 0), &s, &t, &world(&t, |_| 1, None), 0).rollout;
    let r = step(&r, &s, &t, &obeying(&r, &t, 0), 1_000).rollout;
    assert_eq!(r.updated.len(), 3, "canary, then the last batch");
    let paused = pause(&r);
    let st = step(&paused, &s, &t, &obeying(&paused, &t, 1_000), 2_000);
    assert_eq!(st.rollout.phase, Phase::Complete, "{st:?}");
    assert!(st.decisions.contains(&Decision::Complete));
    // pauseAfterCanary when the canary is every target: nothing to pause before.
    let one = devices(1);
    let s = Strategy {
        pause_after_canary: true,
        ..strategy()
    };
    let r = step(
        &Rollout::new(1, 2, 0),
        &s,
        &one,
        &world(&one, |_| 1, None),
        0,
    )
    .rollout;
    let st = step(&r, &s, &one, &obeying(&r, &one, 0), 1_000);
    assert_eq!(st.rollout.phase, Phase::Complete, "{st:?}");
    assert!(!st.decisions.contains(&Decision::Paused));
}
