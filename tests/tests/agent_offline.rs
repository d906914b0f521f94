//! End-to-end: an agent whose stored hub state is missing or no longer verifies (SD card
//! corruption, a re-flashed card, a key rotation) restarts offline: it keeps running what
//! the hub placed, volumes included, until the hub's verified word says otherwise.
//! Real hub, agent, containers. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::hub::TestHub;
use drover_tests::{oci, require_root, wait_for};

const T: Duration = Duration::from_secs(60);

#[test]
fn an_unverifiable_hub_state_never_tears_down_workloads_or_volumes_offline() {
    if !require_root("an_unverifiable_hub_state_never_tears_down_workloads_or_volumes_offline") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").expect("busybox layout");
    let mut a = TestAgent::new("offline-keep");
    a.connect_to_hub(&hub.device_add("offline-keep", &["role=keep"]));
    a.start();
    let manifest = format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: keeper}}\nspec:\n  selector: {{matchLabels: {{role: keep}}}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n      volumes: [{{name: data}}]\n      containers:\n        - name: main\n          image: oci:{}:latest\n          command: [/bin/sh, -c, \"echo kept > /data/f; while true; do sleep 1; done\"]\n          mounts: [{{volume: data, mountPath: /data}}]\n",
        image.display()
    );
    let (code, _, err) = hub.apply("keeper.yaml", &manifest);
    assert_eq!(code, 0, "apply: {err}");
    let pid = a.wait_running("keeper", "main", T);
    let volume_file = a.state.join("volumes/keeper/data/f");
    wait_for("the volume file", T, || volume_file.exists().then_some(()));

    // Hub gone, agent stopped, and its stored hub state corrupted.
    hub.stop();
    a.stop();
    let stored = a.state.join("hub-desired.bin");
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the signature no longer verifies
    std::fs::write(&stored, bytes).unwrap();

    a.start();
    a.wait_ps("a report from the restarted agent", T, |_| true);
    std::thread::sleep(Duration::from_secs(3)); // a few passes
    let ps = a.ps().expect("ps");
    assert_eq!(
        a.running_pid("keeper", "main"),
        Some(pid),
        "the workload was touched: {ps}"
    );
    assert!(volume_file.exists(), "the volume was deleted");
    let warned = ps["agent"]["warnings"].as_array().is_some_and(|w| {
        w.iter().any(|w| {
            w.as_str()
                .unwrap_or("")
                .contains("no verified desired state")
        })
    });
    assert!(warned, "ps does not say why: {ps}");

    // The hub is back: its verified state keeps the workload as it is.
    hub.start();
    wait_for("the hub's state to verify again", T, || {
        a.ps().filter(|p| {
            p["agent"]["warnings"]
                .as_array()
                .is_some_and(|w| w.is_empty())
                && p["observed_generation"].as_u64().unwrap_or(0) > 0
        })
    });
    assert_eq!(a.running_pid("keeper", "main"), Some(pid));
    assert!(volume_file.exists());
}
