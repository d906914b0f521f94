//! End-to-end: dashboard clients and Home Assistant discovery, with real hubs, the
//! embedded broker, a real Mosquitto with the generated ACL file, and the Mosquitto
//! command-line clients as dashboards, sensors and devices.
//! - clients log in but are no devices, share the devices' namespace, and their
//!   credentials never authenticate a status, presence or telemetry message;
//! - Mosquitto with `broker-config mosquitto-acl` lets a client read the mirrors but not a
//!   device's desired state, and drops what a client publishes on a device's topics;
//! - with `dashboards.home_assistant = true`, retained discovery configs arrive under the
//!   configured prefix once per entity set, their templates render (Jinja2) against the
//!   real mirrors, and a workload that goes away is removed;
//! - Home Assistant's birth message (`online` on `{prefix}/status`, from a login granted
//!   `--publish` on it) brings every config back, once however often it is sent, and so
//!   does the hub's reconnect after a Mosquitto restart that lost the retained ones.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use drover_protocol::auth::seal_status;
use drover_protocol::telemetry::{ContainerUsage, DeviceUsage, WorkloadUsage, seal_telemetry};
use drover_protocol::{ContainerStatus, DeviceStatus, Name, Phase, Telemetry, WorkloadStatus};
use drover_tests::hub::{
    Mosquitto, TestHub, device_password, free_port, snippet_credential as credential,
};
use drover_tests::wait_for;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A login: client id, username, password.
#[derive(Clone, Copy)]
struct Login<'a>(&'a str, &'a str, &'a str);

fn args(port: u16, l: Login<'_>) -> Vec<String> {
    let port = port.to_string();
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-i",
        l.0,
        "-u",
        l.1,
        "-P",
        l.2,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `mosquitto_pub` of a binary payload; its exit status.
fn publish(port: u16, l: Login<'_>, topic: &str, payload: &[u8]) -> bool {
    let mut child = Command::new("mosquitto_pub")
        .args(args(port, l))
        .args(["-q", "1", "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    child.stdin.take().unwrap().write_all(payload).unwrap();
    child.wait().unwrap().success()
}

/// `mosquitto_sub` until `count` messages or `wait_s` seconds.
fn read(port: u16, l: Login<'_>, topics: &[&str], count: u32, wait_s: u32) -> Output {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(args(port, l));
    for t in topics {
        cmd.args(["-t", t]);
    }
    cmd.args(["-C", &count.to_string(), "-W", &wait_s.to_string()])
        .output()
        .expect("mosquitto_sub")
}

/// A `mosquitto_sub` printing `retain<TAB>topic<TAB>payload` lines into `file` (the
/// payload in hex when `file` ends with `.hex`: device payloads are binary).
fn watch(hub: &TestHub, port: u16, l: Login<'_>, topics: &[&str], file: &str) -> Child {
    let out = std::fs::File::create(hub.dir.path().join(file)).unwrap();
    let format = if file.ends_with(".hex") {
        "%r\t%t\t%x"
    } else {
        "%r\t%t\t%p"
    };
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(args(port, l)).args(["-F", format]);
    for t in topics {
        cmd.args(["-t", t]);
    }
    cmd.stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub")
}

fn lines(hub: &TestHub, file: &str) -> Vec<(bool, String, String)> {
    String::from_utf8_lossy(&std::fs::read(hub.dir.path().join(file)).unwrap())
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, '\t');
            let (r, t, p) = (it.next()?, it.next()?, it.next().unwrap_or(""));
            Some((r == "1", t.to_owned(), p.to_owned()))
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn device_names(hub: &TestHub) -> Vec<String> {
    let d = hub.devices();
    d.as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

fn status(device: &str, workloads: &[(&str, &str)]) -> DeviceStatus {
    let workloads = workloads
        .iter()
        .map(|(w, c)| {
            let mut c = ContainerStatus::new(Name::new(*c).unwrap(), "img".into(), Phase::Running);
            c.ready = true;
            WorkloadStatus {
                name: Name::new(*w).unwrap(),
                phase: Phase::Running,
                restarts: 0,
                containers: vec![c],
                last_error: None,
                reason: None,
                revision: 1,
                rolled_back: None,
            }
        })
        .collect();
    DeviceStatus {
        device: Name::new(device).unwrap(),
        observed_generation: 0,
        time_ms: drover_hub::now_ms(),
        workloads,
        capacity: Default::default(),
    }
}

fn sample(seq: u64, workload: (&str, &str)) -> Telemetry {
    Telemetry {
        seq,
        time_s: drover_hub::now_ms() / 1000,
        device: DeviceUsage {
            cpu_permille: 375,
            memory_used_kib: 512 * 1024,
            memory_available_kib: 1024 * 1024,
            disk_free_kib: 4 * 1024 * 1024,
            temperature_decicelsius: Some(481),
            ..Default::default()
        },
        workloads: vec![WorkloadUsage {
            name: Name::new(workload.0).unwrap(),
            containers: vec![ContainerUsage {
                name: Name::new(workload.1).unwrap(),
                cpu_ms: seq * 1_000,
                memory_kib: 10 * 1024,
                memory_peak_kib: 12 * 1024,
                pids: 2,
                oom_kills: 0,
                restarts: 0,
            }],
        }],
        dropped: 0,
    }
}

fn sealed_sample(seq: u64, w: (&str, &str), device: &str, cred: &str) -> Vec<u8> {
    seal_telemetry(
        &sample(seq, w),
        &Name::new(device).unwrap(),
        cred.as_bytes(),
    )
    .unwrap()
}

#[test]
fn clients_log_in_but_never_count_as_devices() {
    let mut hub = TestHub::new();
    hub.start();
    let port = hub.broker_port;
    let pi = credential(&hub.device_add("pi-1", &[]));
    let pi_pw = device_password(&pi);
    let (code, out, err) = hub.cli(&["client", "add", "dash"]);
    assert_eq!(code, 0, "{err}");
    let dash = out
        .lines()
        .find_map(|l| l.strip_prefix("credential: "))
        .unwrap_or_else(|| panic!("no credential line: {out}"))
        .to_owned();
    assert!(
        out.contains("read-only") && out.contains("mosquitto_sub -h"),
        "{out}"
    );
    assert!(
        out.contains("does not") || out.contains("not which topics"),
        "{out}"
    );
    let sensor = hub.client_add("sensor", &["--publish", "drover/v1/sensors/#"]);

    // One namespace, and no grant into the device topics.
    let (code, _, err) = hub.cli(&["client", "add", "pi-1"]);
    assert!(code != 0 && err.contains("taken by a device"), "{err}");
    let (code, _, err) = hub.cli(&["device", "add", "dash"]);
    assert!(code != 0 && err.contains("taken by a client"), "{err}");
    let (code, _, err) = hub.cli(&[
        "client",
        "add",
        "x",
        "--publish",
        "drover/v1/dev/pi-1/status",
    ]);
    assert!(code != 0 && err.contains("device topics"), "{err}");
    let (code, _, err) = hub.cli(&["client", "add", "dash"]);
    assert!(code != 0 && err.contains("taken by a client"), "{err}");
    assert_eq!(device_names(&hub), ["pi-1"]);
    let (code, out, err) = hub.cli(&["client", "ls", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let ls: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ls[0]["name"], "dash");
    assert_eq!(ls[1]["publish"][0], "drover/v1/sensors/#");
    assert!(
        !out.contains(&dash) && !out.contains(&sensor),
        "ls never shows credentials"
    );

    // A client reads the retained status mirror with its own login.
    let st = seal_status(&status("pi-1", &[]), pi.as_bytes()).unwrap();
    assert!(publish(
        port,
        Login("pi-1", "pi-1", &pi_pw),
        "drover/v1/dev/pi-1/status",
        &st
    ));
    let mirror = wait_for("dash reads the status mirror", T, || {
        let out = read(
            port,
            Login("dash", "dash", &dash),
            &["drover/v1/dev/pi-1/status/json"],
            1,
            3,
        );
        serde_json::from_slice::<Value>(&out.stdout).ok()
    });
    assert_eq!(mirror["device"], "pi-1");

    // Its credential authenticates no device message: not as itself, not as pi-1.
    let l = Login("dash", "dash", &dash);
    let own = seal_status(&status("dash", &[]), dash.as_bytes()).unwrap();
    assert!(publish(port, l, "drover/v1/dev/dash/status", &own));
    let as_pi = seal_status(&status("pi-1", &[]), dash.as_bytes()).unwrap();
    assert!(publish(port, l, "drover/v1/dev/pi-1/status", &as_pi));
    let w = ("sensor", "app");
    assert!(publish(
        port,
        l,
        "drover/v1/dev/dash/telemetry",
        &sealed_sample(1, w, "dash", &dash)
    ));
    assert!(publish(
        port,
        l,
        "drover/v1/dev/pi-1/telemetry",
        &sealed_sample(2, w, "pi-1", &dash)
    ));
    assert!(publish(port, l, "drover/v1/dev/dash/online", b"online"));
    hub.wait_stat("status_rejected_unknown_device", 1);
    hub.wait_stat("status_rejected_bad_mac", 1);
    hub.wait_stat("telemetry_rejected_unknown_device", 1);
    hub.wait_stat("telemetry_rejected_bad_mac", 1);
    hub.wait_stat("presence_rejected_unknown_device", 1);
    let s = hub.stats();
    assert_eq!(
        (&s["status_accepted"], &s["telemetry_accepted"]),
        (&1.into(), &0.into()),
        "{s}"
    );
    assert_eq!(device_names(&hub), ["pi-1"]);

    // Removed: it cannot log in any more; the others still can, also after a restart.
    assert!(!publish(
        port,
        Login("dash", "dash", "wrong"),
        "drover/v1/x",
        b"x"
    ));
    let (code, out, err) = hub.cli(&["client", "rm", "dash"]);
    assert!(
        code == 0 && out.contains("client/dash removed"),
        "{out}{err}"
    );
    let (code, _, err) = hub.cli(&["client", "rm", "dash"]);
    assert!(code != 0 && err.contains("not found"), "{err}");
    assert!(
        !publish(port, l, "drover/v1/x", b"x"),
        "a removed client logged in"
    );
    hub.stop();
    hub.start();
    assert!(publish(
        port,
        Login("sensor", "sensor", &sensor),
        "drover/v1/sensors/t",
        b"21.5"
    ));
    assert!(!publish(port, l, "drover/v1/x", b"x"));
    let (_, out, _) = hub.cli(&["client", "ls"]);
    assert!(out.contains("sensor") && !out.contains("dash"), "{out}");
}

#[test]
fn mosquitto_acl_enforces_what_the_embedded_broker_cannot() {
    let port = free_port();
    let mut hub = TestHub::with_external_broker(port);
    hub.start();
    let pi = credential(&hub.device_add("pi-1", &[]));
    let pi_pw = device_password(&pi);
    let dash = hub.client_add("dash", &["--subscribe", "drover/v1/sensors/#"]);
    let sensor = hub.client_add("sensor", &["--publish", "drover/v1/sensors/#"]);
    let (code, acl, err) = hub.cli(&["broker-config", "mosquitto-acl"]);
    assert_eq!(code, 0, "{err}");
    let hub_cred = std::fs::read_to_string(hub.dir.path().join("data/hub.credential")).unwrap();
    let hub_cred = hub_cred.trim();
    let logins = [
        ("drover-hub", hub_cred),
        ("pi-1", &pi_pw),
        ("dash", &dash),
        ("sensor", &sensor),
    ];
    let _mq = Mosquitto::start_with_acl(port, &acl, &logins);
    let (pi_l, dash_l) = (Login("pi-1", "pi-1", &pi_pw), Login("dash", "dash", &dash));
    let sensor_l = Login("sensor", "sensor", &sensor);

    // The hub connects and republishes the desired state: the device reads its own…
    let desired = "drover/v1/dev/pi-1/desired";
    wait_for("pi-1 to read its desired state", T, || {
        let out = read(port, pi_l, &[desired], 1, 3);
        (out.status.success() && !out.stdout.is_empty()).then_some(())
    });
    // …a client may not (it is retained: it would arrive at once).
    let out = read(port, dash_l, &[desired, "drover/v1/dev/+/desired"], 1, 3);
    assert!(out.stdout.is_empty(), "a client read a desired state");
    let anonymous = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "#",
            "-C",
            "1",
            "-W",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!anonymous.status.success() && anonymous.stdout.is_empty());

    // Clients read the mirrors and what they were granted.
    let mut mirror = watch(
        &hub,
        port,
        dash_l,
        &[
            "drover/v1/dev/+/telemetry/json",
            "drover/v1/sensors/#",
            desired,
        ],
        "dash.txt",
    );
    // The hub's login sees everything a device's status topic receives.
    let mut status_watch = watch(
        &hub,
        port,
        Login("watcher", "drover-hub", hub_cred),
        &["drover/v1/dev/pi-1/status", "drover/v1/dev/pi-1/online"],
        "hub.hex",
    );
    std::thread::sleep(Duration::from_millis(700));
    let w = ("sensor", "app");
    assert!(publish(
        port,
        pi_l,
        "drover/v1/dev/pi-1/telemetry",
        &sealed_sample(5, w, "pi-1", &pi)
    ));
    assert!(publish(
        port,
        sensor_l,
        "drover/v1/sensors/kitchen",
        b"21.5"
    ));
    // What clients publish on a device's topics never arrives (Mosquitto drops it quietly).
    assert!(publish(
        port,
        dash_l,
        "drover/v1/dev/pi-1/status",
        b"forged-by-dash"
    ));
    assert!(publish(
        port,
        sensor_l,
        "drover/v1/dev/pi-1/online",
        b"offline"
    ));
    assert!(publish(port, dash_l, "drover/v1/sensors/kitchen", b"-40"));
    let st = seal_status(&status("pi-1", &[]), pi.as_bytes()).unwrap();
    assert!(publish(port, pi_l, "drover/v1/dev/pi-1/status", &st));
    hub.wait_stat("status_accepted", 1);
    hub.wait_stat("telemetry_accepted", 1);
    let seen = wait_for("the telemetry mirror and the sensor reading", T, || {
        let l = lines(&hub, "dash.txt");
        (l.len() >= 2).then_some(l)
    });
    std::thread::sleep(Duration::from_secs(1));
    let seen_after = lines(&hub, "dash.txt");
    assert_eq!(seen.len(), seen_after.len(), "{seen_after:?}");
    assert!(
        seen.iter()
            .any(|(_, t, p)| t == "drover/v1/dev/pi-1/telemetry/json" && p.contains("\"seq\":5")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, t, p)| t == "drover/v1/sensors/kitchen" && p == "21.5"),
        "{seen:?}"
    );
    // The hub's login saw exactly one message on the device's status and presence topics:
    // the device's own status.
    let hub_saw = lines(&hub, "hub.hex");
    assert_eq!(
        hub_saw.len(),
        1,
        "a client's publish reached a device topic: {hub_saw:?}"
    );
    assert_eq!(hub_saw[0].1, "drover/v1/dev/pi-1/status");
    assert_eq!(hub_saw[0].2, hex(&st));
    for c in [&mut mirror, &mut status_watch] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Renders every discovery config's `value_template` with Jinja2 (what Home Assistant
/// uses) against the latest payload of its state topic; prints `topic<TAB>result`.
const RENDER: &str = r#"
import json, sys, jinja2
configs, states, variants = json.load(sys.stdin)
env = jinja2.Environment()
for topic, c in sorted(configs.items()):
    tpl = c.get("value_template")
    if not tpl:
        continue
    payloads = [states[c["state_topic"]]] + variants.get(c["state_topic"], [])
    out = [env.from_string(tpl).render(value=p, value_json=json.loads(p)) for p in payloads]
    print(topic + "\t" + "|".join(out))
"#;

#[test]
fn home_assistant_discovery_is_retained_under_the_prefix() {
    let mut hub = TestHub::new();
    hub.append_config("[dashboards]\nhome_assistant = true\nhome_assistant_prefix = \"ha-test\"\n");
    hub.start();
    let port = hub.broker_port;
    let pi = credential(&hub.device_add("pi-1", &[]));
    let pi_pw = device_password(&pi);
    let dash = hub.client_add("dash", &[]);
    // The embedded broker wants client id == username: a second login for later readers.
    let late = hub.client_add("late", &[]);
    let late_l = Login("late", "late", &late);
    let (pi_l, dash_l) = (Login("pi-1", "pi-1", &pi_pw), Login("dash", "dash", &dash));
    let mirrors = [
        "drover/v1/dev/pi-1/telemetry/json",
        "drover/v1/dev/pi-1/status/json",
    ];
    let mut live = watch(
        &hub,
        port,
        dash_l,
        &["ha-test/#", mirrors[0], mirrors[1]],
        "live.txt",
    );
    std::thread::sleep(Duration::from_millis(700));
    let st = seal_status(&status("pi-1", &[("sensor", "app")]), pi.as_bytes()).unwrap();
    assert!(publish(port, pi_l, "drover/v1/dev/pi-1/status", &st));
    let tele = "drover/v1/dev/pi-1/telemetry";
    assert!(publish(
        port,
        pi_l,
        tele,
        &sealed_sample(10, ("sensor", "app"), "pi-1", &pi)
    ));
    let configs = |l: &[(bool, String, String)]| -> Vec<(String, String)> {
        l.iter()
            .filter(|(_, t, _)| t.starts_with("ha-test/"))
            .map(|(_, t, p)| (t.clone(), p.clone()))
            .collect()
    };
    let first = wait_for("8 discovery configs", T, || {
        let c = configs(&lines(&hub, "live.txt"));
        (c.len() >= 8).then_some(c)
    });
    let topics: Vec<&str> = first.iter().map(|(t, _)| t.as_str()).collect();
    for object in [
        "sensor/drover_pi-1/cpu",
        "sensor/drover_pi-1/memory_used",
        "sensor/drover_pi-1/disk_free",
        "sensor/drover_pi-1/temperature",
        "binary_sensor/drover_pi-1/online",
        "binary_sensor/drover_pi-1/wl_sensor_health",
        "sensor/drover_pi-1/ct_sensor_app_cpu",
        "sensor/drover_pi-1/ct_sensor_app_memory",
    ] {
        assert!(
            topics.contains(&format!("ha-test/{object}/config").as_str()),
            "{object}: {topics:?}"
        );
    }

    // A second sample with the same workloads sends no config again.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(publish(
        port,
        pi_l,
        tele,
        &sealed_sample(11, ("sensor", "app"), "pi-1", &pi)
    ));
    hub.wait_stat("telemetry_accepted", 2);
    wait_for("the second sample's mirror", T, || {
        let l = lines(&hub, "live.txt");
        l.iter()
            .any(|(_, _, p)| p.contains("\"seq\":11"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let l = lines(&hub, "live.txt");
    assert_eq!(
        configs(&l).len(),
        8,
        "configs sent again: {:?}",
        configs(&l)
    );

    // Retained: a dashboard connecting later gets all of them.
    let later = read(port, late_l, &["ha-test/#"], 8, 5);
    assert_eq!(String::from_utf8_lossy(&later.stdout).lines().count(), 8);

    // Every template renders against the real mirrors as Home Assistant would.
    let config_map: serde_json::Map<String, Value> = first
        .iter()
        .map(|(t, p)| (t.clone(), serde_json::from_str(p).unwrap()))
        .collect();
    let mut states = serde_json::Map::new();
    for (_, t, p) in &l {
        if mirrors.contains(&t.as_str()) {
            states.insert(t.clone(), Value::String(p.clone()));
        }
    }
    let mut st_json: Value = serde_json::from_str(states[mirrors[1]].as_str().unwrap()).unwrap();
    st_json["workloads"][0]["phase"] = "BackOff".into();
    let backoff = st_json.to_string();
    st_json["workloads"] = Value::Array(vec![]);
    let gone = st_json.to_string();
    let variants = serde_json::json!({ mirrors[1]: [backoff, gone] });
    let input = serde_json::json!([config_map, states, variants]).to_string();
    let mut py = Command::new("python3")
        .args(["-c", RENDER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with jinja2 (apt-get install python3-jinja2)");
    py.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "template rendering failed");
    let rendered: std::collections::BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(t, r)| (t.rsplit('/').nth(1).unwrap().to_owned(), r.to_owned()))
        .collect();
    assert_eq!(rendered["cpu"], "37.5", "{rendered:?}");
    assert_eq!(rendered["memory_used"], (512u64 << 20).to_string());
    assert_eq!(rendered["disk_free"], (4u64 << 30).to_string());
    assert_eq!(rendered["temperature"], "48.1");
    assert_eq!(rendered["ct_sensor_app_memory"], (10u64 << 20).to_string());
    let cpu: f64 = rendered["ct_sensor_app_cpu"]
        .parse()
        .unwrap_or_else(|_| panic!("{rendered:?}"));
    assert!(cpu > 0.0, "{rendered:?}");
    assert_eq!(
        rendered["wl_sensor_health"], "OFF|ON|None",
        "healthy, backing off, absent"
    );

    // The workload goes away, another comes: removed (empty retained) and added.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(publish(
        port,
        pi_l,
        tele,
        &sealed_sample(12, ("web", "main"), "pi-1", &pi)
    ));
    let after = wait_for("3 removals and 3 new configs", T, || {
        let c = configs(&lines(&hub, "live.txt"));
        (c.len() >= 14).then_some(c)
    });
    let removed: Vec<&str> = after[8..]
        .iter()
        .filter(|(_, p)| p.is_empty())
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(removed.len(), 3, "{after:?}");
    assert!(removed.iter().all(|t| t.contains("sensor_")), "{removed:?}");
    let later = read(port, late_l, &["ha-test/#"], 20, 4);
    let text = String::from_utf8_lossy(&later.stdout);
    assert_eq!(text.lines().count(), 8, "{text}");
    assert!(
        !text.contains("ct_sensor_app") && text.contains("ct_web_main_cpu"),
        "{text}"
    );

    // Home Assistant's birth message, five times at once: every config once more, and
    // only once (republishes are coalesced).
    let ha = hub.client_add("ha", &["--publish", "ha-test/status"]);
    for _ in 0..5 {
        assert!(publish(
            port,
            Login("ha", "ha", &ha),
            "ha-test/status",
            b"online"
        ));
    }
    let only =
        |l: &[(bool, String, String)]| l.iter().filter(|(_, t, _)| t.ends_with("/config")).count();
    wait_for("the configs sent again", T, || {
        (only(&lines(&hub, "live.txt")) >= 22).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let l = lines(&hub, "live.txt");
    assert_eq!(only(&l), 22, "{l:?}");
    let again: Vec<&str> = l
        .iter()
        .filter(|(_, t, _)| t.ends_with("/config"))
        .skip(14)
        .map(|(_, t, _)| t.as_str())
        .collect();
    assert!(
        again.iter().any(|t| t.contains("ct_web_main_cpu"))
            && !again.iter().any(|t| t.contains("ct_sensor_app")),
        "{again:?}"
    );
    let _ = live.kill();
    let _ = live.wait();
}

/// `mosquitto_pub -r -n`: clears the retained message on `topic`.
fn clear_retained(port: u16, l: Login<'_>, topic: &str) {
    let st = Command::new("mosquitto_pub")
        .args(args(port, l))
        .args(["-q", "1", "-r", "-n", "-t", topic])
        .status()
        .unwrap();
    assert!(st.success(), "clearing {topic}");
}

/// The retained discovery configs a fresh subscriber gets: (topic, payload), sorted.
fn retained_configs(port: u16, l: Login<'_>) -> Vec<(String, String)> {
    let out = Command::new("mosquitto_sub")
        .args(args(port, l))
        .args(["-t", "homeassistant/#", "-F", "%r\t%t\t%p", "-W", "2"])
        .output()
        .unwrap();
    let mut c: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, '\t');
            let (r, t, p) = (it.next()?, it.next()?, it.next().unwrap_or(""));
            (r == "1" && t.ends_with("/config") && !p.is_empty())
                .then(|| (t.to_owned(), p.to_owned()))
        })
        .collect();
    c.sort();
    c
}

#[test]
fn home_assistant_gets_the_configs_again_after_its_birth_and_a_broker_restart() {
    let port = free_port();
    let mut hub = TestHub::with_external_broker(port);
    hub.append_config("[dashboards]\nhome_assistant = true\n");
    hub.start();
    let pi = credential(&hub.device_add("pi-1", &[]));
    let pi_pw = device_password(&pi);
    // What the README tells Home Assistant users to run.
    let ha = hub.client_add("ha", &["--publish", "homeassistant/status"]);
    let dash = hub.client_add("dash", &[]);
    let (code, acl, err) = hub.cli(&["broker-config", "mosquitto-acl"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        acl.contains("user ha\n") && acl.contains("topic write homeassistant/status\n"),
        "{acl}"
    );
    let hub_cred = std::fs::read_to_string(hub.dir.path().join("data/hub.credential")).unwrap();
    let hub_cred = hub_cred.trim().to_owned();
    let logins = [
        ("drover-hub", hub_cred.as_str()),
        ("pi-1", &pi_pw),
        ("ha", &ha),
        ("dash", &dash),
    ];
    let mq = Mosquitto::start_with_acl(port, &acl, &logins);
    let (pi_l, ha_l) = (Login("pi-1", "pi-1", &pi_pw), Login("ha", "ha", &ha));
    let admin = Login("admin", "drover-hub", &hub_cred);
    wait_for("pi-1 to read its desired state", T, || {
        let out = read(port, pi_l, &["drover/v1/dev/pi-1/desired"], 1, 3);
        (out.status.success() && !out.stdout.is_empty()).then_some(())
    });
    let st = seal_status(&status("pi-1", &[("sensor", "app")]), pi.as_bytes()).unwrap();
    assert!(publish(port, pi_l, "drover/v1/dev/pi-1/status", &st));
    let w = ("sensor", "app");
    let tele = "drover/v1/dev/pi-1/telemetry";
    assert!(publish(port, pi_l, tele, &sealed_sample(1, w, "pi-1", &pi)));
    let first = wait_for("8 retained configs", T, || {
        let c = retained_configs(port, ha_l);
        (c.len() == 8).then_some(c)
    });

    // The retained configs are lost (cleared here by the hub's login): a Home Assistant
    // starting now would find nothing.
    for (t, _) in &first {
        clear_retained(port, admin, t);
    }
    assert_eq!(retained_configs(port, ha_l), vec![]);
    // A login without the grant cannot ask for them (Mosquitto drops its publish)…
    let dash_l = Login("dash", "dash", &dash);
    assert!(publish(port, dash_l, "homeassistant/status", b"online"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(retained_configs(port, ha_l), vec![]);
    // …Home Assistant's birth message does, and they are back as they were.
    assert!(publish(port, ha_l, "homeassistant/status", b"online"));
    let back = wait_for("the configs after HA's birth message", T, || {
        let c = retained_configs(port, ha_l);
        (c.len() == 8).then_some(c)
    });
    assert_eq!(back, first);

    // Mosquitto restarts without persistence: every retained message is gone, and the hub
    // sends the configs again once it has reconnected.
    mq.stop();
    let _mq = Mosquitto::start_with_acl(port, &acl, &logins);
    let restored = wait_for("the configs after the broker restart", T, || {
        let c = retained_configs(port, ha_l);
        (c.len() == 8).then_some(c)
    });
    assert_eq!(restored, first);
    assert!(
        hub.logs()
            .contains("sending Home Assistant discovery configs again"),
        "no republish logged"
    );
}
