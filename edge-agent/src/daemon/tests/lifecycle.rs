//! Create, replace, remove (during a long grace period) and adopt after a restart.

use drover_protocol::{ImageRef, Phase};

use super::fixture::*;
use crate::host::fake::HostCall;
use crate::reconcile::plan::STOP_SLACK_MS;
use crate::runtime::fake::{RuntimeCall, StopBehaviour};

#[test]
fn a_new_workload_is_pulled_then_created_started_recorded_and_reported_running() {
    let mut fx = Fx::new();
    fx.images.hold_pulls(true);
    fx.agent.set_static_desired(vec![wl("web", "a")]);
    let wake = fx.pass();
    assert_eq!(fx.images.pulls_started(), vec![img("a")]);
    assert_eq!(
        fx.rt.take_calls(),
        vec![],
        "nothing is created before its image"
    );
    assert!(fx.record("web").is_none());
    assert_eq!(
        ms(wake),
        Some(1_000),
        "pull progress is refreshed every second"
    );
    let st = fx.published().expect("the pending workload is published");
    let c = &st.workloads[0].containers[0];
    assert_eq!(
        (st.workloads[0].phase, c.pull_done_bytes, c.pull_total_bytes),
        (Phase::Pending, Some(10), Some(100))
    );

    fx.images.hold_pulls(false);
    let wake = fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![clear("web"), start("web")]);
    assert_eq!(wake, None, "nothing is due");
    let rec = fx.record("web").expect("the workload is recorded");
    assert_eq!(rec.spec, wl("web", "a"));
    let crec = &rec.containers[&n("app")];
    assert!(crec.started && crec.start_error.is_none());
    assert_eq!(
        (crec.restarts, crec.image_digest.as_deref()),
        (0, Some("sha256:a"))
    );
    let dir = fx.paths().container_dir(&n("web"), &n("app"));
    let data = fx.paths().container_data_dir(&n("web"), &n("app"));
    assert_eq!(fx.host.take_calls(), vec![HostCall::MountRootfs(data)]);
    assert!(
        fx.host.file(&dir.join("bundle/config.json")).is_some(),
        "bundle written"
    );
    let st = fx.published().expect("Running is published");
    let w = &st.workloads[0];
    assert_eq!(
        (w.phase, w.containers[0].pid),
        (Phase::Running, fx.rt.pid(&id("web")))
    );
    assert!(w.containers[0].pid.is_some());
}

#[test]
fn a_replacement_waits_for_its_image_then_stops_removes_and_starts_keeping_volumes() {
    let mut fx = Fx::new();
    let mut v1 = wl("web", "a");
    v1.volumes = vec![n("data")];
    fx.run(vec![v1.clone()]);
    let old_pid = fx.rt.pid(&id("web")).expect("runs");
    let mut v2 = v1.clone();
    v2.containers[0].image = ImageRef::new(img("b")).unwrap();
    fx.images.hold_pulls(true);
    fx.agent.set_static_desired(vec![v2.clone()]);
    for _ in 0..2 {
        fx.pass();
        assert_eq!(
            fx.rt.take_calls(),
            vec![],
            "the old one runs on while b is pulled"
        );
        assert_eq!(fx.rt.pid(&id("web")), Some(old_pid));
        assert_eq!(fx.record("web").unwrap().spec, v1);
        assert_eq!(fx.phase("web"), Phase::Running);
    }
    assert_eq!(fx.images.pulls_started(), vec![img("a"), img("b")]);

    fx.images.hold_pulls(false);
    fx.pass();
    let calls = fx.rt.take_calls();
    let stop = RuntimeCall::RequestStop { id: id("web") };
    assert_eq!(
        calls,
        vec![stop, clear("web"), clear("web"), start("web")],
        "stop, remove, start"
    );
    let host = fx.host.take_calls();
    let (run, data) = (
        fx.paths().container_dir(&n("web"), &n("app")),
        fx.paths().container_data_dir(&n("web"), &n("app")),
    );
    assert!(
        !host
            .iter()
            .any(|c| matches!(c, HostCall::RemoveDir(d) if *d != run)),
        "volumes and logs kept: {host:?}"
    );
    assert!(host.contains(&HostCall::RemoveContainerDir(data)));
    assert!(host.contains(&HostCall::RemoveDir(run)));
    assert!(
        fx.host
            .dir_exists(&fx.paths().volumes_dir(&n("web")).join("data"))
    );
    let rec = fx.record("web").unwrap();
    assert_eq!(rec.spec, v2);
    assert_eq!(
        rec.containers[&n("app")].image_digest.as_deref(),
        Some("sha256:b")
    );
    let new_pid = fx.rt.pid(&id("web")).expect("the new one runs");
    assert_ne!(new_pid, old_pid);
    assert_eq!(fx.workload("web").containers[0].pid, Some(new_pid));
}

/// `web` (grace 30 s, ignores SIGTERM) is removed while `other` is created; returns the
/// boot time the stop was asked at.
fn remove_web_while_creating_other(fx: &mut Fx) -> u64 {
    let mut web = wl("web", "a");
    web.stop_grace_ms = 30_000;
    fx.run(vec![web]);
    fx.rt.set_stop_behaviour(StopBehaviour::Hang);
    fx.agent.set_static_desired(vec![wl("other", "b")]);
    let t0 = fx.boot();
    let wake = fx.pass();
    assert_eq!(fx.boot(), t0, "the pass never waited on the clock");
    assert_eq!(
        ms(wake),
        Some(30_000 + STOP_SLACK_MS),
        "woken at the stop deadline"
    );
    let stop = RuntimeCall::RequestStop { id: id("web") };
    assert_eq!(
        fx.rt.take_calls(),
        vec![stop, clear("other"), start("other")]
    );
    let stopping = fx.record("web").expect("kept while stopping").stopping;
    assert_eq!(stopping.map(|s| s.requested_at_boot_ms), Some(t0));
    assert_eq!(fx.rt.running(), vec![id("other"), id("web")]);
    let st = fx.published().expect("published during the grace period");
    let phases: Vec<_> = st
        .workloads
        .iter()
        .map(|w| (w.name.to_string(), w.phase))
        .collect();
    assert_eq!(
        phases,
        vec![
            ("other".into(), Phase::Running),
            ("web".into(), Phase::Stopping)
        ]
    );
    let web = st.workloads.iter().find(|w| w.name == n("web")).unwrap();
    assert_eq!(web.containers[0].phase, Phase::Stopping);
    t0
}

#[test]
fn a_removal_never_blocks_the_pass_and_is_forced_after_grace_and_slack() {
    let mut fx = Fx::new();
    let t0 = remove_web_while_creating_other(&mut fx);
    let deadline = t0 + 30_000 + STOP_SLACK_MS;
    fx.clock.advance(10_000);
    assert_eq!(ms(fx.pass()), Some(deadline - fx.boot()));
    assert_eq!(fx.rt.take_calls(), vec![]);
    assert!(fx.published().is_none(), "nothing changed");
    fx.clock.advance(deadline - 1 - fx.boot());
    fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![], "not before the deadline");
    fx.clock.advance(1);
    assert_eq!(fx.pass(), None);
    assert_eq!(
        fx.rt.take_calls(),
        vec![RuntimeCall::ForceStop { id: id("web") }]
    );
    assert!(fx.record("web").is_none());
    assert_eq!(fx.rt.running(), vec![id("other")]);
    let st = fx.published().expect("the removal is published");
    assert_eq!(st.workloads.len(), 1);
    let host = fx.host.take_calls();
    let gone = [
        fx.paths().volumes_dir(&n("web")),
        fx.paths().logs_dir(&n("web")),
    ];
    for d in gone {
        assert!(
            host.contains(&HostCall::RemoveDir(d.clone())),
            "{d:?} removed: {host:?}"
        );
    }
}

#[test]
fn a_container_that_exits_during_its_grace_period_is_removed_without_force() {
    let mut fx = Fx::new();
    remove_web_while_creating_other(&mut fx);
    fx.clock.advance(2_000);
    fx.rt.exit(&id("web"), 143);
    assert_eq!(fx.pass(), None);
    assert_eq!(fx.rt.take_calls(), vec![clear("web")], "no ForceStop");
    assert!(fx.record("web").is_none());
    assert_eq!(fx.rt.running(), vec![id("other")]);
}

#[test]
fn a_restarted_agent_adopts_running_containers_without_touching_them() {
    let mut fx = Fx::new();
    fx.run(vec![wl("web", "a")]);
    let pid = fx.rt.pid(&id("web"));
    fx.restart();
    fx.clock.advance(5_000);
    assert_eq!(fx.pass(), None);
    assert_eq!(fx.rt.take_calls(), vec![], "no start, no stop");
    assert_eq!(fx.host.take_calls(), vec![], "no mount");
    assert_eq!(fx.images.pulls_started(), vec![img("a")], "no new pull");
    let st = fx
        .published()
        .expect("the new agent publishes its first status");
    let w = &st.workloads[0];
    assert_eq!(
        (w.phase, w.restarts, w.containers[0].pid),
        (Phase::Running, 0, pid)
    );
    assert_eq!(fx.rt.pid(&id("web")), pid);
}

#[test]
fn a_replaced_workload_that_ignores_sigterm_shows_stopping_and_its_successor_waits() {
    let mut fx = Fx::new();
    fx.run(vec![wl("web", "a")]);
    fx.rt.set_stop_behaviour(StopBehaviour::Hang);
    fx.agent.set_static_desired(vec![wl("web", "b")]);
    assert_eq!(ms(fx.pass()), Some(3_000 + STOP_SLACK_MS));
    let stop = RuntimeCall::RequestStop { id: id("web") };
    assert_eq!(fx.rt.take_calls(), vec![stop]);
    let st = fx.published().expect("Stopping is published");
    assert_eq!(st.workloads.len(), 1);
    assert_eq!(st.workloads[0].phase, Phase::Stopping);
    assert_eq!(
        st.workloads[0].containers[0].image,
        img("a"),
        "what still runs"
    );
    fx.clock.advance(1_000);
    fx.pass();
    assert_eq!(
        fx.rt.take_calls(),
        vec![],
        "the new one waits for the old to go"
    );
    fx.rt.exit(&id("web"), 143);
    assert_eq!(fx.pass(), None);
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web"), clear("web"), start("web")]
    );
    assert_eq!(fx.record("web").unwrap().spec, wl("web", "b"));
    assert_eq!(fx.published().unwrap().workloads[0].phase, Phase::Running);
}
