//! End-to-end: the demo flow of README command 1, as a test — a hub, one registered
//! agent, the example images (built by `images/build.sh` for amd64, arm64 and arm/v7)
//! imported into the hub, `configs/demo/` applied: both workloads run from the hub's
//! registry, sensor readings arrive on the hub's broker, the HTTP service answers.
//! Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drover_tests::agent::TestAgent;
use drover_tests::hub::{TestHub, free_port};
use drover_tests::{require_root, wait_for};

const T: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn running(a: &TestAgent, wl: &str) -> Option<u32> {
    a.running_pid(wl, "main")
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn demo_flow_hub_agent_example_images_and_sensor_readings() {
    if !require_root("demo_flow_hub_agent_example_images_and_sensor_readings") {
        return;
    }
    let images = repo().join("target/images");
    for img in ["sensor-sim", "uptime-http"] {
        assert!(
            images.join(img).join("index.json").exists(),
            "{img} image missing: run images/build.sh (scripts/test.sh does)"
        );
    }
    let mut hub = TestHub::new();
    hub.start();
    let mut board = TestAgent::new("demo-board");
    board.connect_to_hub(&hub.device_add("demo-board", &["role=demo"]));
    board.start();
    // The sensor's and the dashboard's broker logins are clients, not devices.
    let sensor_cred = hub.client_add("demo-sensor", &["--publish", "drover/v1/sensors/#"]);
    let dash_cred = hub.client_add("demo-dash", &["--subscribe", "drover/v1/sensors/#"]);

    let t0 = Instant::now();
    for img in ["sensor-sim", "uptime-http"] {
        let (code, _, err) = hub.cli(&["image", "import", &images.join(img).display().to_string()]);
        assert_eq!(code, 0, "import {img}: {err}");
    }
    eprintln!("import of both images: {:?}", t0.elapsed());

    let port = free_port();
    let fleet = hub.dir.path().join("fleet");
    std::fs::create_dir_all(&fleet).unwrap();
    for f in ["sensor.yaml", "uptime.yaml"] {
        let text = std::fs::read_to_string(repo().join("configs/demo").join(f)).unwrap();
        let text = text
            .replace("@BROKER@", &format!("127.0.0.1:{}", hub.broker_port))
            .replace("@SENSOR_CREDENTIAL@", &sensor_cred)
            .replace("@PORT@", &port.to_string());
        std::fs::write(fleet.join(f), text).unwrap();
    }
    let t0 = Instant::now();
    let (code, _, err) = hub.cli(&["apply", "-f", &fleet.display().to_string()]);
    assert_eq!(code, 0, "apply configs/demo: {err}");
    wait_for("sensor running", T, || running(&board, "sensor"));
    wait_for("uptime running", T, || running(&board, "uptime"));
    eprintln!(
        "apply to both running (pulls from the hub included): {:?}",
        t0.elapsed()
    );

    let broker_port = hub.broker_port.to_string();
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker_port,
            "-i",
            "demo-dash",
            "-u",
            "demo-dash",
            "-P",
            &dash_cred,
        ])
        .args(["-t", "drover/v1/sensors/#", "-C", "2", "-W", "30"])
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    let readings = String::from_utf8_lossy(&out.stdout);
    assert!(
        readings.matches("temperature").count() >= 2 && readings.contains("humidity"),
        "no readings: {readings}"
    );

    let body = wait_for("the uptime service to answer", T, || {
        http_get(port, "/").filter(|b| b.contains("uptime_seconds"))
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    wait_for("the hub to see 2/2 ready", T, || {
        let d = hub.devices();
        let row = d
            .as_array()?
            .iter()
            .find(|d| d["name"] == "demo-board")?
            .clone();
        (row["ready"] == 2 && row["total"] == 2 && row["in_sync"] == true).then_some(())
    });
    let devices = hub.devices();
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["demo-board"],
        "the demo's broker logins are no devices"
    );
}
