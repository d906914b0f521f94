//! End-to-end, hub side of telemetry, through a real hub and its embedded broker: samples
//! sealed with a device's credential are accepted, shown by `top`, kept in the history
//! (across a restart) and mirrored as JSON; forged, replayed and unknown-device samples
//! are dropped and counted — also after a hub restart, from the seq the history holds.
//! Samples are published with `mosquitto_pub`, as any device (or attacker) on the broker.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drover_protocol::auth::seal_status;
use drover_protocol::telemetry::{ContainerUsage, DeviceUsage, WorkloadUsage, seal_telemetry};
use drover_protocol::{DeviceStatus, Name, Telemetry};
use drover_tests::hub::{TestHub, device_password, snippet_credential as credential};
use drover_tests::wait_for;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// `mosquitto_sub` printing each message on `topic` on its own line, into a file.
/// A subscriber process, killed when dropped (also when the test fails).
struct Subscriber(Child);

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn subscribe(hub: &TestHub, user: &str, cred: &str, topic: &str, out: &str) -> Subscriber {
    let file = std::fs::File::create(hub.dir.path().join(out)).unwrap();
    let child = Command::new("mosquitto_sub")
        .args(hub.mqtt_login(user, cred))
        .args(["-t", topic])
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    Subscriber(child)
}

fn sample(seq: u64, cpu_ms: u64) -> Telemetry {
    Telemetry {
        seq,
        time_s: drover_hub::now_ms() / 1000,
        device: DeviceUsage {
            cpu_permille: 375,
            load1_centi: 42,
            memory_used_kib: 512 * 1024,
            memory_available_kib: 1536 * 1024,
            disk_free_kib: 8 * 1024 * 1024,
            temperature_decicelsius: Some(481),
            uptime_s: 3600,
            agent_rss_kib: 6000,
            ..Default::default()
        },
        workloads: vec![WorkloadUsage {
            name: Name::new("sensor").unwrap(),
            containers: vec![ContainerUsage {
                name: Name::new("app").unwrap(),
                cpu_ms,
                memory_kib: 10 * 1024,
                memory_peak_kib: 12 * 1024,
                pids: 4,
                oom_kills: 1,
                restarts: 3,
            }],
        }],
        dropped: 0,
    }
}

#[test]
fn samples_are_verified_counted_kept_and_mirrored() {
    let mut hub = TestHub::new();
    hub.start();
    let cred = credential(&hub.device_add("pi-t", &[]));
    let pw = device_password(&cred);
    // A dashboard's read-only broker login (a client, not a device).
    let (code, out, err) = hub.cli(&["client", "add", "dash", "-o", "json"]);
    assert_eq!(code, 0, "client add: {err}");
    let dash = serde_json::from_str::<Value>(&out).unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let dev = Name::new("pi-t").unwrap();
    let topic = "drover/v1/dev/pi-t/telemetry";
    let mirror = subscribe(
        &hub,
        "dash",
        &dash,
        "drover/v1/dev/pi-t/telemetry/json",
        "mirror.txt",
    );
    std::thread::sleep(Duration::from_millis(500));

    hub.mqtt_publish(
        "pi-t",
        &pw,
        topic,
        &seal_telemetry(&sample(10, 1_000), &dev, cred.as_bytes()).unwrap(),
    );
    hub.wait_stat("telemetry_accepted", 1);
    std::thread::sleep(Duration::from_millis(1100)); // the next sample one second later
    let second = seal_telemetry(&sample(11, 1_500), &dev, cred.as_bytes()).unwrap();
    hub.mqtt_publish("pi-t", &pw, topic, &second);
    hub.wait_stat("telemetry_accepted", 2);
    // A replay of a genuine sample, a forgery, and a device that does not exist.
    hub.mqtt_publish("pi-t", &pw, topic, &second);
    let forged = seal_telemetry(&sample(12, 0), &dev, b"guessed").unwrap();
    hub.mqtt_publish("pi-t", &pw, topic, &forged);
    hub.mqtt_publish("pi-t", &pw, "drover/v1/dev/ghost/telemetry", &second);
    hub.wait_stat("telemetry_rejected_unknown_device", 1);
    let s = hub.stats();
    assert_eq!(s["telemetry_accepted"], 2, "{s}");
    assert_eq!(s["telemetry_rejected_replayed"], 1, "{s}");
    assert_eq!(s["telemetry_rejected_bad_mac"], 1, "{s}");

    // A status: the device is online (for `top`), and it is mirrored as JSON, retained,
    // for dashboards connecting later.
    let status = DeviceStatus {
        device: dev.clone(),
        observed_generation: 0,
        time_ms: drover_hub::now_ms(),
        workloads: vec![],
        capacity: Default::default(),
    };
    hub.mqtt_publish(
        "pi-t",
        &pw,
        "drover/v1/dev/pi-t/status",
        &seal_status(&status, cred.as_bytes()).unwrap(),
    );
    wait_for("the device online", T, || {
        (hub.devices()[0]["online"] == true).then_some(())
    });

    // `top` shows the device and its container, with the rate between the two samples.
    let (code, out, err) = hub.cli(&["top"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pi-t   online") && out.contains("38%") && out.contains("48.1°C"),
        "{out}"
    );
    let (code, out, _) = hub.cli(&["top", "workloads"]);
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.contains("sensor"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("app") && line.contains("10.0MiB") && line.contains("12.0MiB"),
        "{out}"
    );
    let (_, json, _) = hub.cli(&["top", "workloads", "-o", "json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let c = &v[0]["containers"][0];
    assert_eq!(c["cpu_seconds"], 1.5, "{v}");
    assert_eq!(c["restarts"], 3);
    assert!(
        c["cpu_percent"].as_f64().is_some_and(|p| p > 0.0),
        "a rate from two samples: {v}"
    );

    // The JSON mirror carried both accepted samples, and nothing else.
    let mirrored = wait_for("two mirrored samples", T, || {
        let text = std::fs::read_to_string(hub.dir.path().join("mirror.txt")).unwrap();
        (text.lines().count() >= 2).then_some(text)
    });
    let seqs: Vec<u64> = mirrored
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [10, 11], "{mirrored}");
    drop(mirror);

    let retained = wait_for("the retained status mirror", T, || {
        let out = Command::new("mosquitto_sub")
            .args(hub.mqtt_login("dash", &dash))
            .args(["-t", "drover/v1/dev/pi-t/status/json", "-C", "1", "-W", "3"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).ok()
    });
    assert_eq!(retained["device"], "pi-t", "{retained}");

    // History: points now; after a restart the history still knows seq 11.
    let (code, out, err) = hub.cli(&["top", "-o", "json"]);
    assert_eq!(code, 0, "{err}: {out}");
    hub.stop();
    hub.start();
    // Until the hub has subscribed again, what is published is lost: publish until counted.
    let until = |key: &str, payload: &[u8]| {
        wait_for(&format!("{key} after the restart"), T, || {
            hub.mqtt_publish("pi-t", &pw, topic, payload);
            std::thread::sleep(Duration::from_millis(300));
            (hub.stats()[key].as_u64() > Some(0)).then_some(())
        })
    };
    until("telemetry_rejected_replayed", &second);
    assert_eq!(
        hub.stats()["telemetry_accepted"],
        0,
        "seq 11 is known from the history"
    );
    let third = seal_telemetry(&sample(12, 2_000), &dev, cred.as_bytes()).unwrap();
    until("telemetry_accepted", &third);
    let url = format!("{}/v1/telemetry/devices/pi-t/history?minutes=10", hub.api);
    let auth = format!("Authorization: Bearer {}", hub.read_token());
    let out = Command::new("curl")
        .args(["-sf", "-H", &auth, &url])
        .output()
        .expect("curl");
    let h: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", out));
    let points = h["points"].as_array().unwrap();
    assert!(
        !points.is_empty() && points.len() <= 2,
        "one per minute, the latest last: {h}"
    );
    assert_eq!(
        points.last().unwrap()["containers"][0]["memory_bytes"],
        10 * 1024 * 1024
    );

    // A query string that does not parse gets the API's JSON error, naming the parameter.
    let bad_request = |query: &str| {
        let url = format!("{}/v1/telemetry/devices/pi-t/history?{query}", hub.api);
        let out = Command::new("curl")
            .args(["-s", "-H", &auth, "-w", "\n%{http_code}", &url])
            .output()
            .expect("curl");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, "400", "{text}");
        let e: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
        e["error"].as_str().unwrap().to_owned()
    };
    let msg = bad_request("minutes=abc");
    assert!(
        msg.contains("minutes: invalid digit") && msg.contains("expected minutes=N"),
        "{msg}"
    );
    // Out of range is refused too, not clamped behind the caller's back.
    for q in ["minutes=0", "minutes=99999999"] {
        let msg = bad_request(q);
        assert!(
            msg.starts_with("minutes: expected 1 to 10080"),
            "{q}: {msg}"
        );
    }

    // No status for `offline_after` (10 s in tests): `top` says offline, no stale figures.
    let out = wait_for("pi-t offline in top", T, || {
        let (_, out, _) = hub.cli(&["top"]);
        out.contains("pi-t   offline").then_some(out)
    });
    assert!(!out.contains("38%"), "{out}");
}
