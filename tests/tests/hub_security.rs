//! End-to-end: the broker is not trusted. Forged, misdirected and replayed desired states
//! published straight to the broker are rejected and counted by the agent, and nothing
//! changes on the device; a forged status is dropped and counted by the hub. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drover_protocol::auth::sign_desired;
use drover_protocol::{DesiredState, Name};
use drover_tests::agent::TestAgent;
use drover_tests::hub::{TestHub, device_password, snippet_credential as credential};
use drover_tests::{oci, require_root, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn deployment(name: &str, image: &Path, env: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{role: victim}}}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n      containers:\n        - name: main\n          image: oci:{}:latest\n          command: [/bin/sh, -c, \"echo {env}; while true; do sleep 1; done\"]\n",
        image.display()
    )
}

/// Reads the retained message of `topic` as device `user`.
fn retained(hub: &TestHub, user: &str, cred: &str, topic: &str) -> Vec<u8> {
    let out = Command::new("mosquitto_sub")
        .args(hub.mqtt_login(user, cred))
        .args(["-t", topic, "-C", "1", "-N", "-W", "10"])
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "no retained message on {topic}"
    );
    out.stdout
}

fn rejected(a: &TestAgent, reason_part: &str) -> u64 {
    let Some(ps) = a.ps() else { return 0 };
    let by = &ps["agent"]["hub"]["rejected_by_reason"];
    by.as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| k.contains(reason_part))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    })
}

fn generation(a: &TestAgent) -> Option<u64> {
    a.ps()?["observed_generation"].as_u64()
}

fn pid(a: &TestAgent) -> Option<u32> {
    a.running_pid("app", "main")
}

#[test]
fn forged_misdirected_and_replayed_desired_states_are_rejected_and_counted() {
    if !require_root("forged_misdirected_and_replayed_desired_states_are_rejected_and_counted") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    let mut victim = TestAgent::new("victim");
    victim.connect_to_hub(&hub.device_add("victim", &["role=victim"]));
    victim.start();
    let mallory = credential(&hub.device_add("mallory", &["role=attacker"]));
    let mallory_pw = device_password(&mallory);
    assert_eq!(hub.apply("app.yaml", &deployment("app", &image, "v1")).0, 0);
    let p = wait_for("app running on the victim", T, || pid(&victim));
    let topic = "drover/v1/dev/victim/desired";
    let old = retained(&hub, "mallory", &mallory_pw, topic);
    let g1 = generation(&victim).unwrap();

    // A new generation (v2) replaces the workload; then the old one is replayed.
    assert_eq!(hub.apply("app.yaml", &deployment("app", &image, "v2")).0, 0);
    let p2 = wait_for("v2 running", T, || pid(&victim).filter(|x| *x != p));
    let g2 = wait_for("generation bumped", T, || {
        generation(&victim).filter(|g| *g > g1)
    });
    hub.mqtt_publish("mallory", &mallory_pw, topic, &old);
    wait_for("replay counted", T, || {
        (rejected(&victim, "stale") + rejected(&victim, "older") >= 1).then_some(())
    });

    // Signed by another key.
    let forged = DesiredState {
        device: Name::new("victim").unwrap(),
        generation: g2 + 100,
        workloads: vec![],
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    hub.mqtt_publish(
        "mallory",
        &mallory_pw,
        topic,
        &sign_desired(&forged, &key).unwrap(),
    );
    wait_for("forgery counted", T, || {
        (rejected(&victim, "signature") >= 1).then_some(())
    });

    // A genuine desired state of another device, sent to the victim's topic.
    let theirs = retained(
        &hub,
        "mallory",
        &mallory_pw,
        "drover/v1/dev/mallory/desired",
    );
    hub.mqtt_publish("mallory", &mallory_pw, topic, &theirs);
    wait_for("misdirection counted", T, || {
        (rejected(&victim, "device") >= 1).then_some(())
    });

    // Garbage.
    hub.mqtt_publish("mallory", &mallory_pw, topic, b"\x01\x02garbage");
    wait_for("garbage counted", T, || {
        (rejected(&victim, "malformed") >= 1).then_some(())
    });

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (pid(&victim), generation(&victim)),
        (Some(p2), Some(g2)),
        "nothing may change on the device"
    );

    // A status forged by mallory on the victim's topic is dropped and counted by the hub.
    let forged_status = drover_protocol::DeviceStatus {
        device: Name::new("victim").unwrap(),
        observed_generation: 0,
        time_ms: 0,
        workloads: vec![],
        capacity: Default::default(),
    };
    let sealed = drover_protocol::auth::seal_status(&forged_status, mallory.as_bytes()).unwrap();
    hub.mqtt_publish(
        "mallory",
        &mallory_pw,
        "drover/v1/dev/victim/status",
        &sealed,
    );
    wait_for("hub counts the forged status", T, || {
        let (code, out, _) = hub.cli(&["get", "stats", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).ok()?;
        (code == 0 && v.to_string().contains("mac") && count_nonzero(&v, "mac")).then_some(())
    });
    let d = hub.devices();
    let victim_row = d
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "victim")
        .unwrap();
    assert_eq!(
        victim_row["ready"], 1,
        "the forged status must not replace the real one: {victim_row}"
    );
}

#[test]
fn a_device_cannot_poison_another_devices_retained_state_for_longer_than_one_republish() {
    if !require_root(
        "a_device_cannot_poison_another_devices_retained_state_for_longer_than_one_republish",
    ) {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    let mut victim = TestAgent::new("victim");
    victim.connect_to_hub(&hub.device_add("victim", &["role=victim"]));
    victim.start();
    let mallory = credential(&hub.device_add("mallory", &["role=attacker"]));
    let mallory_pw = device_password(&mallory);
    assert_eq!(hub.apply("app.yaml", &deployment("app", &image, "v1")).0, 0);
    let p = wait_for("app running on the victim", T, || pid(&victim));
    let g = generation(&victim).unwrap();
    let topic = "drover/v1/dev/victim/desired";
    let genuine = retained(&hub, "mallory", &mallory_pw, topic);

    // Overwritten with another device's genuine state, with garbage, then deleted: each
    // time the hub puts the genuine one back within a republish.
    let theirs = retained(
        &hub,
        "mallory",
        &mallory_pw,
        "drover/v1/dev/mallory/desired",
    );
    for (what, forged) in [
        ("another device's state", theirs.as_slice()),
        ("garbage", b"\x01\x02garbage".as_slice()),
        ("a deletion", b"".as_slice()),
    ] {
        hub.mqtt_publish_retained("mallory", &mallory_pw, topic, forged);
        // Past the hub's one-second limit per device, so each one is answered.
        std::thread::sleep(Duration::from_millis(1_100));
        wait_for(&format!("genuine state back after {what}"), T, || {
            let now = Command::new("mosquitto_sub")
                .args(hub.mqtt_login("mallory", &mallory_pw))
                .args(["-t", topic, "-C", "1", "-N", "-W", "3"])
                .output()
                .ok()?;
            (now.stdout == genuine).then_some(())
        });
    }
    let stats = hub.stats();
    assert!(
        stats["desired_overwritten"].as_u64().unwrap_or(0) >= 3,
        "counted: {stats}"
    );

    // A restarted victim gets the genuine state from the broker and keeps its workload.
    victim.stop();
    victim.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (pid(&victim), generation(&victim)),
        (Some(p), Some(g)),
        "the workload and generation stay"
    );
}

#[test]
fn a_device_cannot_spoof_another_devices_presence_or_replay_its_statuses() {
    if !require_root("a_device_cannot_spoof_another_devices_presence_or_replay_its_statuses") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    let mut victim = TestAgent::new("victim");
    victim.connect_to_hub(&hub.device_add("victim", &["role=victim"]));
    victim.start();
    let mallory = credential(&hub.device_add("mallory", &["role=attacker"]));
    let mallory_pw = device_password(&mallory);
    let online_topic = "drover/v1/dev/victim/online";
    let status_topic = "drover/v1/dev/victim/status";
    wait_for("victim online", T, || {
        let d = hub.devices();
        let v = d
            .as_array()?
            .iter()
            .find(|d| d["name"] == "victim")?
            .clone();
        (v["online"] == true).then_some(())
    });
    // What mallory can capture: the victim's retained presence and a status of it.
    let presence = retained(&hub, "mallory", &mallory_pw, online_topic);
    let capture = std::process::Command::new("mosquitto_sub")
        .args(hub.mqtt_login("mallory", &mallory_pw))
        .args(["-t", status_topic, "-C", "1", "-N", "-W", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hub.apply("app.yaml", &deployment("app", &image, "v1")).0, 0);
    let old_status = capture.wait_with_output().unwrap().stdout;
    assert!(!old_status.is_empty(), "captured a status");
    wait_for("app running on the victim", T, || pid(&victim));
    let ready = || {
        let d = hub.devices();
        let v = d
            .as_array()?
            .iter()
            .find(|d| d["name"] == "victim")?
            .clone();
        (v["ready"] == 1 && v["online"] == true).then_some(())
    };
    wait_for("victim ready at the hub", T, ready);
    let before = hub.stats();
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);

    // Plain `offline` (the older agents' form), a replay of the victim's own sealed
    // presence and of its old status, and an `offline` sealed with mallory's key.
    hub.mqtt_publish("mallory", &mallory_pw, online_topic, b"offline");
    hub.mqtt_publish("mallory", &mallory_pw, online_topic, &presence);
    hub.mqtt_publish("mallory", &mallory_pw, status_topic, &old_status);
    let forged = drover_protocol::freshness::seal_presence(
        &Name::new("victim").unwrap(),
        false,
        u64::MAX,
        mallory.as_bytes(),
    )
    .unwrap();
    hub.mqtt_publish("mallory", &mallory_pw, online_topic, &forged);
    wait_for("replays and forgery counted", T, || {
        let now = hub.stats();
        let replayed = count(&now, "presence_rejected_replayed")
            - count(&before, "presence_rejected_replayed");
        let old =
            count(&now, "status_rejected_replayed") - count(&before, "status_rejected_replayed");
        let mac =
            count(&now, "presence_rejected_bad_mac") - count(&before, "presence_rejected_bad_mac");
        (replayed == 2 && old == 1 && mac == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    wait_for(
        "the victim stays online and ready",
        Duration::from_secs(5),
        ready,
    );

    // The victim's own last will still counts: kill -9 its agent.
    victim.kill9();
    wait_for("victim offline through its sealed last will", T, || {
        let d = hub.devices();
        let v = d
            .as_array()?
            .iter()
            .find(|d| d["name"] == "victim")?
            .clone();
        (v["online"] == false).then_some(())
    });
}

/// True when some counter whose key contains `part` is above zero.
fn count_nonzero(v: &Value, part: &str) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (k.contains(part) && v.as_u64().is_some_and(|n| n > 0)) || count_nonzero(v, part)
        }),
        Value::Array(a) => a.iter().any(|v| count_nonzero(v, part)),
        _ => false,
    }
}
