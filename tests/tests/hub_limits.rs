//! End-to-end: message-size limits between a real hub (`drover-hub serve`, embedded
//! rumqttd) and real agents. A device whose status is large — here hundreds of workloads
//! from its manifests folder, all waiting for an image that is not there — must stay
//! connected and be seen by the hub, heartbeat after heartbeat: no reconnect loop, no
//! status that is never sent. Needs root (the agents run as they do on a board).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use drover_protocol::{CodecError, DeviceStatus, MAX_MESSAGE_BYTES, encode};
use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::hub::TestHub;
use drover_tests::{require_root, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(90);
/// The agents' heartbeat (the hub's test config marks a device offline after 10 s).
const HEARTBEAT_S: u64 = drover_tests::agent::TEST_HEARTBEAT_S;
/// How many heartbeats the connection must survive.
const HEARTBEATS: u64 = 5;
/// The MQTT packet limit the agent's outgoing side had before the limits were unified.
const OLD_AGENT_OUTGOING: usize = 64 * 1024;

/// Workloads per manifests file (a file holds at most 256 YAML documents).
const PER_FILE: usize = 100;

/// Manifests files with `n` workloads in all, whose image is a long path that does not
/// exist: every workload reports the image in its container and again in its error.
fn many_workloads(n: usize) -> Vec<String> {
    let segment = "a-rather-long-folder-name-for-images-of-this-fleet";
    let missing = Path::new("/nonexistent").join([segment; 4].join("/"));
    let all: Vec<String> = (0..n)
        .map(|i| workload_yaml(&format!("static-{i:04}"), &missing, "true", "", ""))
        .collect();
    all.chunks(PER_FILE).map(|c| c.join("---\n")).collect()
}

/// A hub-connected agent named `name`, with `workloads` static workloads, started.
fn agent(hub: &TestHub, name: &str, workloads: usize) -> TestAgent {
    let mut a = TestAgent::new(name);
    a.connect_to_hub(&hub.device_add(name, &[]));
    for (i, file) in many_workloads(workloads).iter().enumerate() {
        a.write_manifest(&format!("many-{i}.yaml"), file);
    }
    a.start();
    a
}

fn device(hub: &TestHub, name: &str) -> Value {
    let devices = hub.devices();
    devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until the agent reports all `n` workloads failing on their image; returns the
/// size its status encodes to (`Err` size when over the message limit).
fn status_size(a: &TestAgent, n: usize) -> Result<usize, usize> {
    let ps = a.wait_all_in_phase(n, "Error", T);
    let status: DeviceStatus = serde_json::from_value(ps).expect("ps is a DeviceStatus");
    match encode(&status) {
        Ok(bytes) => Ok(bytes.len()),
        Err(CodecError::TooLarge(n)) => Err(n),
        Err(e) => panic!("encoding the status: {e}"),
    }
}

/// Watches `name` for `HEARTBEATS` heartbeats: online at every look, and a newer status
/// accepted by the hub at least once per two heartbeats. Returns the device's last view.
fn stays_online(hub: &TestHub, name: &str) -> Value {
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(HEARTBEAT_S * HEARTBEATS);
    let mut last = Value::Null;
    while Instant::now() < end {
        last = device(hub, name);
        assert_eq!(last["online"], true, "{name} went offline: {last}");
        seen.push(last["last_seen_ms"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(500));
    }
    seen.dedup();
    assert!(
        seen.len() as u64 > HEARTBEATS / 2,
        "{name}: the hub accepted only {} distinct statuses in {HEARTBEATS} heartbeats",
        seen.len()
    );
    last
}

/// The agent's own view of its link: connected, never reconnected.
fn link(a: &TestAgent) -> Value {
    let ps = a.ps().expect("ps");
    let hub = ps["agent"]["hub"].clone();
    assert_eq!(hub["connected"], true, "{hub}");
    assert_eq!(
        hub["reconnects"], 0,
        "the link must not have dropped: {hub}"
    );
    assert!(
        !a.logs().contains("lost the hub broker"),
        "the agent lost its connection"
    );
    hub
}

#[test]
fn devices_with_large_statuses_stay_connected_and_reported() {
    if !require_root("devices_with_large_statuses_stay_connected_and_reported") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    // Above the agent's old outgoing limit, within one message: sent as it is.
    let (mid_n, big_n) = (120, 400);
    let mid = agent(&hub, "limits-mid", mid_n);
    // Over one message: trimmed (container detail dropped), still sent.
    let big = agent(&hub, "limits-big", big_n);

    let mid_size = status_size(&mid, mid_n).expect("mid status fits one message");
    let big_size = status_size(&big, big_n).expect_err("big status is over one message");
    eprintln!("status sizes: mid {mid_size} bytes, big {big_size} bytes");
    assert!(mid_size > OLD_AGENT_OUTGOING, "{mid_size}");
    assert!(big_size > MAX_MESSAGE_BYTES, "{big_size}");

    for name in ["limits-mid", "limits-big"] {
        wait_for(&format!("{name} online at the hub"), T, || {
            (device(&hub, name)["online"] == true).then_some(())
        });
    }
    let t0 = Instant::now();
    let mid_view = stays_online(&hub, "limits-mid");
    let big_view = stays_online(&hub, "limits-big");
    eprintln!("both stayed online for {:?}", t0.elapsed());

    // The hub got every workload of both devices, with its phase (`Pending` only while
    // the agent retries the image, every 30 s).
    for (view, n) in [(&mid_view, mid_n), (&big_view, big_n)] {
        let wls = view["workloads"].as_array().unwrap();
        assert_eq!(wls.len(), n, "{}", view["name"]);
        let failing = |w: &&Value| w["phase"] == "Error" || w["phase"] == "Pending";
        assert!(wls.iter().all(|w| failing(&w)), "{view}");
    }
    let mid_link = link(&mid);
    let big_link = link(&big);
    assert_eq!(mid_link["trimmed_status"], 0, "{mid_link}");
    assert!(
        big_link["trimmed_status"].as_u64().unwrap() >= 1,
        "{big_link}"
    );
    assert!(
        big.logs().contains("trimmed to fit"),
        "the trimming is logged"
    );
}
