//! Where desired state comes from (hub and manifests folder) and when the status is
//! written and published.

use drover_protocol::{DesiredState, Phase};

use super::fixture::*;
use crate::state::StateStore;

#[test]
fn the_hub_wins_a_name_clash_with_the_manifests_folder_and_the_report_says_so() {
    let mut fx = Fx::new();
    let hub = DesiredState {
        device: n("pi"),
        generation: 7,
        workloads: vec![wl("web", "b")],
    };
    fx.agent.set_hub_desired(hub, b"signed payload");
    fx.agent
        .set_static_desired(vec![wl("web", "a"), wl("logger", "c")]);
    fx.pass();
    assert_eq!(
        fx.state.load_hub_desired().as_deref(),
        Some(&b"signed payload"[..])
    );
    assert_eq!(
        fx.images.pulls_started(),
        vec![img("b"), img("c")],
        "a is never pulled"
    );
    assert_eq!(
        fx.record("web").unwrap().spec,
        wl("web", "b"),
        "the hub's spec runs"
    );
    assert_eq!(fx.record("logger").unwrap().spec, wl("logger", "c"));
    let report = fx.state.report().unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("`web`"),
        "{}",
        report.warnings[0]
    );
    let st = fx.published().unwrap();
    assert_eq!(st.observed_generation, 7);
    let names: Vec<_> = st.workloads.iter().map(|w| w.name.to_string()).collect();
    assert_eq!(names, ["web", "logger"]);
    assert!(st.workloads.iter().all(|w| w.phase == Phase::Running));
    assert_eq!(st.workloads[0].containers[0].image, img("b"));
}

#[test]
fn the_status_is_written_and_published_only_when_it_changes() {
    let mut fx = Fx::new();
    fx.agent.set_static_desired(vec![wl("web", "a")]);
    fx.pass();
    assert_eq!(fx.state.reports_written(), 1);
    assert!(fx.published().is_some());
    fx.pass();
    fx.clock.advance(30_000); // only the report's time differs
    fx.pass();
    assert_eq!(
        fx.state.reports_written(),
        1,
        "identical passes write nothing"
    );
    assert!(fx.published().is_none(), "and publish nothing");
    fx.rt.exit(&id("web"), 2);
    fx.pass();
    assert_eq!(fx.state.reports_written(), 2);
    let st = fx.published().expect("the exit is published");
    assert_eq!(st.workloads[0].phase, Phase::BackOff);
}

/// A device with a hub (whose broker is never reached in these tests).
fn with_hub(fx: &mut Fx) {
    fx.agent.cfg.hub = Some(crate::hub_link::config::HubConfig {
        broker: "127.0.0.1:1883".into(),
        ca: None,
        ca_file: None,
        credential: "c".repeat(32),
        public_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        heartbeat: drover_protocol::quantity::DurationMs(30_000),
        status_queue: 16,
        registry: None,
        key_agreement: None,
    });
    fx.restart();
}

#[test]
fn a_hub_state_that_no_longer_verifies_keeps_what_runs_until_the_hub_speaks() {
    let mut fx = Fx::new();
    with_hub(&mut fx);
    let hub = |generation, workloads| DesiredState {
        device: n("pi"),
        generation,
        workloads,
    };
    fx.agent.set_hub_desired(
        hub(3, vec![wl("web", "a"), wl("db", "b")]),
        b"not a signature",
    );
    fx.pass();
    let pid = fx.rt.pid(&id("web")).expect("web runs");
    fx.rt.take_calls();
    fx.host.take_calls();

    // Restarted offline, the stored state does not verify (re-flashed key, corruption).
    fx.restart();
    fx.clock.advance(60_000);
    fx.pass();
    assert_eq!(
        fx.rt.take_calls(),
        vec![],
        "nothing stopped, nothing started"
    );
    assert_eq!(fx.host.take_calls(), vec![], "no volume or folder removed");
    assert_eq!(fx.rt.pid(&id("web")), Some(pid));
    assert_eq!(fx.phase("db"), Phase::Running);
    let warnings = fx.state.report().unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("no verified desired state") && w.contains("web")),
        "{warnings:?}"
    );

    // The hub's verified word decides: db stays, web goes.
    fx.agent
        .set_hub_desired(hub(4, vec![wl("db", "b")]), b"signed");
    fx.pass();
    assert_eq!(
        fx.rt.take_calls()[0],
        crate::runtime::fake::RuntimeCall::RequestStop { id: id("web") }
    );
    assert_eq!(fx.record("web"), None, "removed once the hub said so");
    assert_eq!(fx.phase("db"), Phase::Running);
}

#[test]
fn a_depends_on_cycle_between_the_hub_and_the_manifests_folder_is_reported() {
    // Found by review: hub workload `hubw` waits for local `loc`, which waits for `hubw`;
    // both waited forever with no word of why.
    use drover_protocol::{Dependency, DependencyCondition};
    let after = |name: &str, on: &str| {
        let mut w = wl(name, "a");
        w.depends_on = vec![Dependency {
            name: n(on),
            condition: DependencyCondition::Started,
        }];
        w
    };
    let mut fx = Fx::new();
    let hub = DesiredState {
        device: n("pi"),
        generation: 3,
        workloads: vec![after("hubw", "loc")],
    };
    fx.agent.set_hub_desired(hub, b"signed payload");
    fx.agent.set_static_desired(vec![after("loc", "hubw")]);
    fx.pass();
    let warnings = fx.state.report().unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("cycle")
            && w.contains("hubw (hub)")
            && w.contains("loc (manifests folder)")),
        "{warnings:?}"
    );
    assert!(fx.record("hubw").is_none() && fx.record("loc").is_none());
}

#[test]
fn a_passing_probe_shows_no_old_failure_message() {
    // Found by review: a healthy, ready container kept showing "startup probe:
    // Connection refused" from its first seconds.
    use crate::shim::status::ProbeStatus;
    let mut fx = Fx::new();
    let probes = |failures: u32, ready: bool| ProbeStatus {
        health: drover_protocol::Health::Healthy,
        ready,
        failures,
        message: Some("startup probe: Connection refused".into()),
        ..ProbeStatus::default()
    };
    fx.rt.set_probes(&id("web"), probes(0, true));
    fx.run(vec![wl("web", "a")]);
    let c = &fx.workload("web").containers[0];
    assert_eq!((c.ready, c.probe_message.as_deref()), (true, None));
    fx.rt.set_probes(&id("web"), probes(2, false));
    fx.pass();
    let c = &fx.workload("web").containers[0];
    assert_eq!(
        c.probe_message.as_deref(),
        Some("startup probe: Connection refused")
    );
}
