//! End-to-end: the device's own rollback with no hub reachable. A real hub (its embedded
//! broker) hands a real agent a bad revision of a Deployment (its readiness probe never
//! passes) and goes away at once; the agent alone puts the previous revision back within
//! the strategy's `healthTimeout`, the previous container runs (and is ready) again, and
//! when the hub returns it shows the rollout `RolledBack` because of that device. Needs
//! root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use drover_tests::agent::TestAgent;
use drover_tests::hub::TestHub;
use drover_tests::{require_root, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
/// The strategy's `healthTimeout`.
const HEALTH_TIMEOUT_S: u64 = 15;

/// Deployment `web` (RollingUpdate, one canary) whose container is ready once
/// `/tmp/ready` exists; `version` says whether its command creates it.
fn deployment(image: &Path, version: &str, creates_ready: bool) -> String {
    let ready = if creates_ready {
        "touch /tmp/ready; "
    } else {
        ""
    };
    format!(
        "apiVersion: drover.dev/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{site: rb}}}}
  minReadySeconds: 1
  strategy: {{type: RollingUpdate, canary: 1, batchSize: 1, healthTimeout: {HEALTH_TIMEOUT_S}s, failureThreshold: 1}}
  template:
    spec:
      stopGracePeriod: 1s
      containers:
        - name: main
          image: oci:{}:latest
          command: [/bin/sh, -c, \"{ready}echo {version}; while true; do sleep 1; done\"]
          readinessProbe:
            exec: {{command: [test, -f, /tmp/ready]}}
            periodSeconds: 1
",
        image.display()
    )
}

fn web(ps: &Value) -> Option<&Value> {
    ps["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == "web")
}

/// `web`'s running revision and whether its container runs and is ready.
fn revision_ready(a: &TestAgent) -> Option<(u64, bool)> {
    let ps = a.ps()?;
    let w = web(&ps)?;
    let c = &w["containers"][0];
    let running = c["phase"] == "Running";
    Some((w["revision"].as_u64()?, running && c["ready"] == true))
}

fn rollout(hub: &TestHub) -> Value {
    let (code, out, err) = hub.cli(&["rollout", "status", "web", "-o", "json"]);
    assert_eq!(code, 0, "rollout status: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn with_the_hub_gone_the_device_rolls_a_bad_revision_back_by_itself() {
    if !require_root("with_the_hub_gone_the_device_rolls_a_bad_revision_back_by_itself") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let (a, image) = TestAgent::with_busybox("device-rollback");
    a.connect_to_hub(&hub.device_add("rb-1", &["site=rb"]));
    let mut a = a;
    a.start();

    assert_eq!(hub.apply("web.yaml", &deployment(&image, "v1", true)).0, 0);
    let (good, _) = wait_for("v1 running and ready", T, || {
        revision_ready(&a).filter(|(r, ready)| *r > 0 && *ready)
    });
    wait_for("v1 complete on the hub", T, || {
        let r = rollout(&hub);
        (r["revision"] == good && r["rollout"]["phase"] != "Progressing").then_some(())
    });
    let v1_pid = a.running_pid("web", "main").unwrap();

    // v2 never becomes ready. The hub goes away as soon as the device runs it.
    assert_eq!(hub.apply("web.yaml", &deployment(&image, "v2", false)).0, 0);
    let (bad, _) = wait_for("v2 running on the device", T, || {
        revision_ready(&a).filter(|(r, _)| *r > good)
    });
    hub.stop();
    let gone = Instant::now();
    let v2_pid = a.running_pid("web", "main");
    assert_ne!(v2_pid, Some(v1_pid), "v2 replaced v1");

    // The agent alone: the previous revision back within the health timeout.
    let ps = a.wait_ps("the device's own rollback", T, |p| {
        web(p).is_some_and(|w| w["revision"] == good && w["rolled_back"].is_object())
    });
    let rolled_back_after = gone.elapsed();
    assert!(
        rolled_back_after < Duration::from_secs(HEALTH_TIMEOUT_S + 10),
        "rolled back {rolled_back_after:?} after the hub went away"
    );
    let rb = &web(&ps).unwrap()["rolled_back"];
    assert_eq!(
        (&rb["from"], &rb["to"]),
        (&Value::from(bad), &Value::from(good))
    );
    let reason = rb["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("not healthy within {HEALTH_TIMEOUT_S}s")),
        "{reason}"
    );
    let (_, ready) = wait_for("v1 ready again", T, || {
        revision_ready(&a).filter(|(r, ready)| *r == good && *ready)
    });
    assert!(ready);
    let back_pid = a.running_pid("web", "main").unwrap();
    assert!(Some(back_pid) != v2_pid, "a new process of v1 runs");
    assert!(
        a.logs().contains("revision rolled back by the device"),
        "{}",
        a.logs()
    );

    // The hub returns: it hears the rollback and rolls the rollout back for it.
    hub.start();
    let r = wait_for("the hub to show RolledBack", T, || {
        let r = rollout(&hub);
        (r["rollout"]["phase"] == "RolledBack").then_some(r)
    });
    let why = r["rollout"]["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("rb-1") && why.contains("rolled back by itself"),
        "{r}"
    );
    // What the hub now sends is what the device already runs: no restart.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(revision_ready(&a), Some((good, true)));
    assert_eq!(a.running_pid("web", "main"), Some(back_pid), "{}", a.logs());
}
