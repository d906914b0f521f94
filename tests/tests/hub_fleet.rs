//! End-to-end: a real hub (`drover-hub serve`), real agents in separate processes with
//! their own state folders, real containers, and a real broker (embedded rumqttd, or
//! Debian's Mosquitto). Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_tests::agent::TestAgent;
use drover_tests::hub::{Mosquitto, TestHub};
use drover_tests::{oci, require_root, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// A Deployment of a busybox sleeper from `image`, selecting `selector` (YAML flow map).
fn deployment(name: &str, image: &Path, selector: &str, extra: &str, env: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {selector}\n{extra}  template:\n    spec:\n      stopGracePeriod: 1s\n      containers:\n        - name: main\n          image: oci:{}:latest\n          command: [/bin/sh, -c, \"echo up {env}; while true; do sleep 1; done\"]\n          resources: {{memory: 32Mi}}\n",
        image.display()
    )
}

fn device_labels(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {{name: {name}, labels: {labels}}}\n"
    )
}

/// A hub-connected agent named `name` with `labels`, started.
fn agent(hub: &TestHub, name: &str, labels: &[&str]) -> TestAgent {
    let a = TestAgent::new(name);
    a.connect_to_hub(&hub.device_add(name, labels));
    let mut a = a;
    a.start();
    a
}

fn busybox(dir: &Path) -> PathBuf {
    let image = dir.join("busybox");
    oci::busybox_layout(&image, "latest").expect("busybox layout");
    image
}

/// The PID of `wl/main` if it runs on `a`.
fn running(a: &TestAgent, wl: &str) -> Option<u32> {
    a.running_pid(wl, "main")
}

fn has_workload(a: &TestAgent, wl: &str) -> bool {
    a.ps().is_some_and(|p| {
        p["workloads"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["name"] == wl))
    })
}

fn wait_gone(a: &TestAgent, wl: &str) {
    wait_for(&format!("{wl} removed"), T, || {
        a.ps().filter(|_| !has_workload(a, wl)).map(|_| ())
    });
}

fn device<'a>(devices: &'a Value, name: &str) -> &'a Value {
    devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn deployment_runs_on_the_selected_devices_and_moves_when_relabelled() {
    if !require_root("deployment_runs_on_the_selected_devices_and_moves_when_relabelled") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = busybox(hub.dir.path());
    let a1 = agent(&hub, "sel-a1", &["role=sensor"]);
    let a2 = agent(&hub, "sel-a2", &["role=sensor"]);
    let a3 = agent(&hub, "sel-a3", &["role=gateway"]);
    wait_for("three devices online", T, || {
        let d = hub.devices();
        ["sel-a1", "sel-a2", "sel-a3"]
            .iter()
            .all(|n| device(&d, n)["online"] == true)
            .then_some(())
    });

    let t0 = Instant::now();
    let (code, _, err) = hub.apply(
        "sensor.yaml",
        &deployment("sensor", &image, "{matchLabels: {role: sensor}}", "", ""),
    );
    assert_eq!(code, 0, "apply: {err}");
    let p1 = wait_for("sensor on a1", T, || running(&a1, "sensor"));
    let p2 = wait_for("sensor on a2", T, || running(&a2, "sensor"));
    eprintln!("apply to running on two agents: {:?}", t0.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !has_workload(&a3, "sensor"),
        "a3 does not match the selector"
    );

    // The hub sees what runs: ready 1/1 and in sync on both.
    wait_for("hub to see both ready and in sync", T, || {
        let d = hub.devices();
        ["sel-a1", "sel-a2"]
            .iter()
            .all(|n| device(&d, n)["ready"] == 1 && device(&d, n)["in_sync"] == true)
            .then_some(())
    });
    let (code, table, _) = hub.cli(&["get", "devices"]);
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("sel-a1") && l.contains("1/1")),
        "{table}"
    );

    // Relabel: a3 becomes a sensor, a1 stops being one. The workload moves; a2's stays.
    let relabel = format!(
        "{}---\n{}",
        device_labels("sel-a1", "{role: gateway}"),
        device_labels("sel-a3", "{role: sensor}")
    );
    let (code, _, err) = hub.apply("devices.yaml", &relabel);
    assert_eq!(code, 0, "apply devices: {err}");
    wait_for("sensor on a3", T, || running(&a3, "sensor"));
    wait_gone(&a1, "sensor");
    assert_eq!(
        running(&a2, "sensor"),
        Some(p2),
        "a2's sensor must not be touched"
    );
    assert!(!Path::new(&format!("/proc/{p1}")).exists() || running(&a1, "sensor").is_none());
}

#[test]
fn replicas_spread_over_different_devices() {
    if !require_root("replicas_spread_over_different_devices") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = busybox(hub.dir.path());
    let agents: Vec<TestAgent> = (1..=3)
        .map(|i| agent(&hub, &format!("rep-a{i}"), &["pool=x"]))
        .collect();
    wait_for("three devices online", T, || {
        let d = hub.devices();
        (1..=3)
            .all(|i| device(&d, &format!("rep-a{i}"))["online"] == true)
            .then_some(())
    });
    let dep = deployment(
        "web",
        &image,
        "{matchLabels: {pool: x}}",
        "  replicas: 2\n  placement: spread\n",
        "",
    );
    let (code, _, err) = hub.apply("web.yaml", &dep);
    assert_eq!(code, 0, "apply: {err}");
    wait_for("two replicas running", T, || {
        (agents
            .iter()
            .filter(|a| running(a, "web").is_some())
            .count()
            == 2)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        agents.iter().filter(|a| has_workload(a, "web")).count(),
        2,
        "exactly two devices run a replica"
    );
}

#[test]
fn agents_keep_running_without_the_hub_and_converge_without_restarting_unchanged_workloads() {
    if !require_root(
        "agents_keep_running_without_the_hub_and_converge_without_restarting_unchanged_workloads",
    ) {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = busybox(hub.dir.path());
    let mut a1 = agent(&hub, "off-a1", &["site=1"]);
    let a2 = agent(&hub, "off-a2", &["site=1"]);
    for (f, d) in [
        (
            "a.yaml",
            deployment("alpha", &image, "{matchLabels: {site: \"1\"}}", "", "v1"),
        ),
        (
            "b.yaml",
            deployment("beta", &image, "{matchLabels: {site: \"1\"}}", "", ""),
        ),
    ] {
        assert_eq!(hub.apply(f, &d).0, 0);
    }
    let alpha1 = wait_for("alpha on a1", T, || running(&a1, "alpha"));
    let beta1 = wait_for("beta on a1", T, || running(&a1, "beta"));
    let alpha2 = wait_for("alpha on a2", T, || running(&a2, "alpha"));

    // The hub (and with it the embedded broker) goes away: nothing changes on the devices.
    hub.stop();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        (
            running(&a1, "alpha"),
            running(&a1, "beta"),
            running(&a2, "alpha")
        ),
        (Some(alpha1), Some(beta1), Some(alpha2))
    );

    // Back again: desired states come from the store; nothing restarts.
    hub.start();
    wait_for("both devices online again", T, || {
        let d = hub.devices();
        ["off-a1", "off-a2"]
            .iter()
            .all(|n| device(&d, n)["online"] == true && device(&d, n)["in_sync"] == true)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (
            running(&a1, "alpha"),
            running(&a1, "beta"),
            running(&a2, "alpha")
        ),
        (Some(alpha1), Some(beta1), Some(alpha2))
    );

    // a1 disconnects; alpha changes meanwhile; a1 comes back and converges: alpha is
    // replaced, beta (unchanged) keeps its process.
    a1.kill9();
    assert_eq!(
        hub.apply(
            "a.yaml",
            &deployment("alpha", &image, "{matchLabels: {site: \"1\"}}", "", "v2")
        )
        .0,
        0
    );
    let new2 = wait_for("alpha replaced on a2", T, || {
        running(&a2, "alpha").filter(|p| *p != alpha2)
    });
    assert_ne!(new2, alpha2);
    a1.start();
    wait_for("alpha replaced on a1", T, || {
        running(&a1, "alpha").filter(|p| *p != alpha1)
    });
    assert_eq!(
        running(&a1, "beta"),
        Some(beta1),
        "beta did not change and must keep its process"
    );
    let c = a1.container("alpha", "main").unwrap();
    assert_eq!(c["restarts"], 0);
}

#[test]
fn the_same_flow_works_through_an_external_mosquitto_broker() {
    if !require_root("the_same_flow_works_through_an_external_mosquitto_broker") {
        return;
    }
    let broker = Mosquitto::start();
    let mut hub = TestHub::with_external_broker(broker.port);
    hub.start();
    let image = busybox(hub.dir.path());
    let a1 = agent(&hub, "mq-a1", &["role=sensor"]);
    let a2 = agent(&hub, "mq-a2", &["role=other"]);
    let (code, _, err) = hub.apply(
        "s.yaml",
        &deployment("sensor", &image, "{matchLabels: {role: sensor}}", "", ""),
    );
    assert_eq!(code, 0, "apply: {err}");
    let p = wait_for("sensor on a1 via mosquitto", T, || running(&a1, "sensor"));
    wait_for("hub sees a1 ready", T, || {
        (device(&hub.devices(), "mq-a1")["ready"] == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!has_workload(&a2, "sensor"));
    hub.stop();
    hub.start();
    wait_for("a1 in sync after hub restart", T, || {
        (device(&hub.devices(), "mq-a1")["in_sync"] == true).then_some(())
    });
    assert_eq!(running(&a1, "sensor"), Some(p));
}

#[test]
fn apply_refuses_unknown_fields_and_bad_selectors_with_their_location_and_changes_nothing() {
    if !require_root(
        "apply_refuses_unknown_fields_and_bad_selectors_with_their_location_and_changes_nothing",
    ) {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = busybox(hub.dir.path());
    assert_eq!(
        hub.apply(
            "ok.yaml",
            &deployment("ok", &image, "{matchLabels: {a: b}}", "", "")
        )
        .0,
        0
    );
    let before = hub.cli(&["get", "deployments", "-o", "json"]).1;

    let unknown = deployment(
        "new",
        &image,
        "{matchLabels: {a: b}}",
        "  replicaz: 2\n",
        "",
    );
    let (code, _, err) = hub.apply("unknown.yaml", &unknown);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown.yaml:6:3") && err.contains("replicaz"),
        "{err}"
    );

    let bad_selector = deployment(
        "new",
        &image,
        "{matchExpressions: [{key: zone, operator: Near, values: [a]}]}",
        "",
        "",
    );
    let (code, _, err) = hub.apply("selector.yaml", &bad_selector);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("selector.yaml:") && err.contains("Near"),
        "{err}"
    );
    assert_eq!(
        hub.cli(&["get", "deployments", "-o", "json"]).1,
        before,
        "a refused apply changes nothing"
    );
}
