//! Start order and crash loops through whole passes: `dependsOn` holds at the first start
//! and again after a power cut, the status says why something waits or when a crash loop
//! retries, and a cycle across manifest files is refused like any broken manifest.

use drover_protocol::{
    Dependency, DependencyCondition, Health, Phase, WorkloadReason, WorkloadSpec,
};

use super::fixture::*;
use crate::shim::status::ProbeStatus;

fn after(name: &str, x: &str, on: &str, condition: DependencyCondition) -> WorkloadSpec {
    let mut w = wl(name, x);
    w.depends_on = vec![Dependency {
        name: n(on),
        condition,
    }];
    w
}

fn probes(health: Health, ready: bool) -> ProbeStatus {
    ProbeStatus {
        health,
        ready,
        ..ProbeStatus::default()
    }
}

fn waiting_for(fx: &Fx, name: &str) -> Option<String> {
    match fx.workload(name).reason {
        Some(WorkloadReason::WaitingForDependency { dependency }) => Some(format!(
            "{} {}",
            dependency.name,
            dependency.condition.as_str()
        )),
        _ => None,
    }
}

#[test]
fn b_waits_for_a_to_be_healthy_and_starts_in_the_pass_its_probe_passes() {
    let mut fx = Fx::new();
    fx.rt.set_probes(&id("a"), probes(Health::Starting, false));
    let b = after("b", "b", "a", DependencyCondition::Healthy);
    fx.agent.set_static_desired(vec![b, wl("a", "a")]);
    fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![clear("a"), start("a")]);
    assert!(fx.record("b").is_none(), "b is not even created");
    assert_eq!(fx.phase("b"), Phase::Pending);
    assert_eq!(waiting_for(&fx, "b").as_deref(), Some("a healthy"));
    assert_eq!(fx.workload("a").reason, None);

    fx.rt.set_probes(&id("a"), probes(Health::Healthy, true));
    fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![clear("b"), start("b")]);
    assert_eq!(
        (fx.phase("b"), fx.workload("b").reason),
        (Phase::Running, None)
    );
}

#[test]
fn without_probes_running_is_healthy_and_started_follows_in_the_same_pass() {
    let mut fx = Fx::new();
    let b = after("b", "b", "a", DependencyCondition::Healthy);
    let c = after("c", "c", "b", DependencyCondition::Started);
    fx.agent.set_static_desired(vec![c, b, wl("a", "a")]);
    fx.pass();
    let order: Vec<_> = starts(&fx.rt.take_calls()).into_iter().cloned().collect();
    assert_eq!(order, vec![start("a"), start("b"), start("c")]);
}

#[test]
fn after_a_power_cut_the_order_holds_again() {
    let mut fx = Fx::new();
    let b = after("b", "b", "a", DependencyCondition::Healthy);
    fx.run(vec![wl("a", "a"), b]);
    // Power cut: every shim and container gone, the records and status files stay.
    fx.rt.lose(&id("a"));
    fx.rt.lose(&id("b"));
    fx.restart();
    fx.rt.set_probes(&id("a"), probes(Health::Starting, false));
    fx.pass();
    assert_eq!(
        starts(&fx.rt.take_calls()),
        vec![&start("a")],
        "b is not started before a is healthy again"
    );
    assert_eq!(waiting_for(&fx, "b").as_deref(), Some("a healthy"));
    fx.rt.set_probes(&id("a"), probes(Health::Healthy, true));
    fx.pass();
    assert_eq!(starts(&fx.rt.take_calls()), vec![&start("b")]);
    assert_eq!(fx.record("b").unwrap().containers[&n("app")].restarts, 1);
}

#[test]
fn a_dependency_outside_the_desired_set_is_a_wait_shown_in_the_status() {
    let mut fx = Fx::new();
    fx.agent
        .set_static_desired(vec![after("b", "b", "db", DependencyCondition::Started)]);
    fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![]);
    assert_eq!(
        fx.images.pulls_started(),
        vec![img("b")],
        "pulled meanwhile"
    );
    assert_eq!(waiting_for(&fx, "b").as_deref(), Some("db started"));
}

#[test]
fn repeated_quick_failures_show_crash_loop_back_off_with_the_wall_time_of_the_next_try() {
    let mut fx = Fx::new();
    fx.run(vec![wl("web", "a")]);
    fx.rt.exit(&id("web"), 1);
    assert_eq!(ms(fx.pass()), Some(1_000));
    assert_eq!(fx.phase("web"), Phase::BackOff);
    assert_eq!(
        fx.workload("web").reason,
        None,
        "one failure is no loop yet"
    );
    fx.clock.advance(1_000);
    fx.pass();
    fx.rt.exit(&id("web"), 1);
    fx.clock.advance(300);
    assert_eq!(ms(fx.pass()), Some(1_700), "2 s back-off from the exit");
    let w = fx.workload("web");
    let next = WALL0 + 1_000 + 300 + 1_700;
    assert_eq!(
        w.reason,
        Some(WorkloadReason::CrashLoopBackOff {
            next_retry_ms: next
        })
    );
    assert_eq!(w.display_state(), "CrashLoopBackOff");
    fx.clock.advance(1_700);
    fx.pass();
    assert_eq!(fx.workload("web").reason, None, "running again");
}

#[test]
fn a_dependson_cycle_across_manifest_files_is_refused_and_the_last_good_state_stays() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |name: &str, on: &str| {
        format!(
            "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  dependsOn:\n    - {{workload: {on}}}\n  containers:\n    - name: app\n      image: oci:/img/a\n"
        )
    };
    let mut fx = Fx::new();
    fx.agent.cfg.manifests_dir = Some(dir.path().to_path_buf());
    std::fs::write(dir.path().join("a.yaml"), manifest("a", "b")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), manifest("b", "none")).unwrap();
    fx.agent.load_manifests();
    fx.pass();
    assert_eq!(waiting_for(&fx, "b").as_deref(), Some("none started"));
    std::fs::write(dir.path().join("b.yaml"), manifest("b", "a")).unwrap();
    fx.agent.load_manifests();
    fx.pass();
    let report = fx.state.report().unwrap();
    let err = report.manifest_error.expect("the cycle is reported");
    assert!(
        err.contains("dependsOn forms a cycle across manifest files: a (")
            && err.contains("a.yaml) → b (")
            && err.contains("b.yaml) → a ("),
        "{err}"
    );
    assert_eq!(
        waiting_for(&fx, "b").as_deref(),
        Some("none started"),
        "the last good manifests stay in force"
    );
}

#[test]
fn a_chain_deeper_than_one_pass_goes_on_in_a_pass_soon_after() {
    let mut fx = Fx::new();
    let mut specs = vec![wl("w0", "a")];
    for i in 1..12 {
        let on = format!("w{}", i - 1);
        specs.push(after(
            &format!("w{i}"),
            "a",
            &on,
            DependencyCondition::Started,
        ));
    }
    fx.agent.set_static_desired(specs);
    let wake = fx.pass();
    assert!(fx.record("w11").is_none(), "one level per round");
    assert!(ms(wake).is_some_and(|w| w <= 200), "{wake:?}");
    fx.pass();
    assert_eq!(fx.phase("w11"), Phase::Running);
    let order: Vec<_> = starts(&fx.rt.take_calls()).into_iter().cloned().collect();
    let want: Vec<_> = (0..12).map(|i| start(&format!("w{i}"))).collect();
    assert_eq!(order, want);
}
