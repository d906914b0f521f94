//! The device's own rollback through whole passes: a revision that is not healthy within
//! its health timeout is replaced by the signed fallback with no hub involved, the status
//! says so, the decision survives an agent restart, a revision proven healthy is never
//! rolled back, and the fallback's image is never trimmed while its revision is on trial.

use drover_protocol::{Health, RolledBack, WorkloadSpec};

use super::fixture::*;
use crate::shim::status::ProbeStatus;

/// Revision `revision` of workload `web` on image `x`, with revision `revision - 1` on
/// image `old` as its fallback and a 60 s health timeout.
fn on_trial(revision: u64, x: &str, old: &str) -> WorkloadSpec {
    let mut fallback = wl("web", old);
    fallback.revision = revision - 1;
    let mut w = wl("web", x);
    w.revision = revision;
    w.health_timeout_ms = 60_000;
    w.fallback = Some(Box::new(fallback));
    w
}

fn probes(ready: bool) -> ProbeStatus {
    ProbeStatus {
        health: if ready {
            Health::Healthy
        } else {
            Health::Unhealthy
        },
        ready,
        message: (!ready).then(|| "readiness probe: HTTP 503".to_owned()),
        ..ProbeStatus::default()
    }
}

/// The revision of `web` the device runs (its record's spec).
fn running_revision(fx: &Fx) -> u64 {
    fx.record("web").expect("web is created").spec.revision
}

/// Passes until `web` runs revision `revision` (a replacement stops the old one first).
fn settle_on(fx: &mut Fx, revision: u64) {
    for _ in 0..10 {
        fx.pass();
        if fx
            .record("web")
            .is_some_and(|r| r.spec.revision == revision && r.stopping.is_none())
            && fx.rt.running().contains(&id("web"))
        {
            return;
        }
        fx.clock.advance(1_000);
    }
    panic!("web never ran revision {revision}: {:?}", fx.record("web"));
}

#[test]
fn a_revision_not_healthy_in_time_is_rolled_back_by_the_device_and_stays_so() {
    let mut fx = Fx::new();
    let mut v1 = wl("web", "a");
    v1.revision = 1;
    fx.run(vec![v1]);
    fx.rt.set_probes(&id("web"), probes(false));
    fx.agent.set_static_desired(vec![on_trial(2, "b", "a")]);
    settle_on(&mut fx, 2);
    let wake = ms(fx.pass()).expect("the pass wakes for the health timeout");
    assert!(
        wake <= 60_000,
        "wakes within the timeout, not at resync: {wake}"
    );
    assert_eq!(fx.workload("web").rolled_back, None);

    fx.clock.advance(60_000);
    let wake = ms(fx.pass());
    assert_eq!(wake, Some(0), "the fallback is planned at once");
    settle_on(&mut fx, 1);
    let image = fx.record("web").unwrap().containers[&n("app")]
        .image_digest
        .clone();
    assert_eq!(
        image.as_deref(),
        Some(digest("a").as_str()),
        "the old image runs"
    );
    let st = fx.workload("web");
    assert_eq!(st.revision, 1);
    let rb = st
        .rolled_back
        .expect("the status says the device rolled back");
    assert_eq!((rb.from, rb.to), (2, 1));
    assert!(
        rb.reason.contains("not healthy within 60s") && rb.reason.contains("HTTP 503"),
        "{rb:?}"
    );

    // The fallback becoming healthy, an agent restart and time change nothing.
    fx.rt.set_probes(&id("web"), probes(true));
    fx.restart();
    fx.clock.advance(600_000);
    fx.pass();
    fx.pass();
    assert_eq!(running_revision(&fx), 1);
    assert!(fx.workload("web").rolled_back.is_some());

    // A new revision from the hub is judged afresh.
    fx.agent.set_static_desired(vec![on_trial(3, "c", "a")]);
    settle_on(&mut fx, 3);
    fx.pass();
    assert_eq!(fx.workload("web").rolled_back, None);
    assert_eq!(fx.workload("web").revision, 3);
}

#[test]
fn a_revision_proven_healthy_is_never_rolled_back_and_one_without_fallback_never_judged() {
    let mut fx = Fx::new();
    fx.rt.set_probes(&id("web"), probes(true));
    fx.agent.set_static_desired(vec![on_trial(2, "b", "a")]);
    settle_on(&mut fx, 2);
    fx.pass();
    fx.rt.set_probes(&id("web"), probes(false));
    fx.clock.advance(3_600_000);
    fx.pass();
    fx.pass();
    assert_eq!(running_revision(&fx), 2);
    assert_eq!(fx.workload("web").rolled_back, None);

    // Without a fallback (static manifests, AllAtOnce) a sick workload stays as it is.
    let mut plain = wl("web", "c");
    plain.revision = 5;
    plain.health_timeout_ms = 60_000;
    fx.agent.set_static_desired(vec![plain]);
    settle_on(&mut fx, 5);
    fx.clock.advance(3_600_000);
    fx.pass();
    assert_eq!(running_revision(&fx), 5);
    assert!(fx.state.revisions().is_empty(), "no track is kept for it");
}

#[test]
fn a_rollback_holds_when_its_track_cannot_be_written_and_is_written_later() {
    let mut fx = Fx::new();
    fx.rt.set_probes(&id("web"), probes(false));
    fx.agent.set_static_desired(vec![on_trial(2, "b", "a")]);
    settle_on(&mut fx, 2);
    fx.state.fail_writes(true);
    fx.clock.advance(60_000);
    fx.pass();
    // The track could not be written: the rollback holds in memory, the hub hears it.
    assert!(
        fx.state
            .revisions()
            .get(&n("web"))
            .is_none_or(|t| t.rolled_back.is_none())
    );
    let published = fx
        .published()
        .expect("the changed status is queued for the hub");
    let web = published
        .workloads
        .iter()
        .find(|w| w.name == n("web"))
        .unwrap();
    assert_eq!(
        web.rolled_back,
        Some(RolledBack {
            from: 2,
            to: 1,
            reason: "not healthy within 60s: app: readiness probe: HTTP 503".into()
        })
    );
    fx.state.fail_writes(false);
    settle_on(&mut fx, 1);
    let track = &fx.state.revisions()[&n("web")];
    assert_eq!((track.revision, track.rolled_back.is_some()), (2, true));
}
