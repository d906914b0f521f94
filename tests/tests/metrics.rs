//! The hub's Prometheus `/metrics`: the body parses with a strict text-format parser and
//! every query of the Grafana dashboard in `configs/grafana/` selects a metric (and label)
//! the hub really exports; a real hub serves the presence and restarts of a real agent's
//! workload, and the usage of telemetry samples it verified (published with
//! `mosquitto_pub`, as a device would). The agent test needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drover_protocol::telemetry::{ContainerUsage, DeviceUsage, WorkloadUsage, seal_telemetry};
use drover_protocol::{Name, Telemetry};
use drover_tests::agent::TestAgent;
use drover_tests::grafana::{self, Selector};
use drover_tests::hub::{TestHub, device_password, snippet_credential as credential};
use drover_tests::prom_text::{self, Exposition};
use drover_tests::{oci, require_root, wait_for};

const T: Duration = Duration::from_secs(60);

fn dashboard_json() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/grafana/drover-fleet.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each selector that names no exported sample, or a label no such sample has.
fn unknown(selectors: &BTreeSet<Selector>, body: &Exposition) -> Vec<String> {
    let mut labels: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in body.families.values() {
        for s in &f.samples {
            let l = labels.entry(s.name.as_str()).or_default();
            l.extend(s.labels.keys().map(String::as_str));
        }
    }
    let mut out = Vec::new();
    for s in selectors {
        match labels.get(s.metric.as_str()) {
            None => out.push(format!("metric {}", s.metric)),
            Some(have) => out.extend(
                s.labels
                    .iter()
                    .filter(|l| !have.contains(l.as_str()))
                    .map(|l| format!("label {l} of {}", s.metric)),
            ),
        }
    }
    out
}

/// Our own conventions on top of the format: `drover_` names, HELP on every family,
/// `_total` exactly on counters.
fn check_conventions(body: &Exposition) {
    for (name, f) in &body.families {
        assert!(name.starts_with("drover_"), "{name}");
        assert!(
            f.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{name} has no HELP"
        );
        assert_eq!(
            f.kind == "counter",
            name.ends_with("_total"),
            "{name} is a {}",
            f.kind
        );
        assert!(
            !f.samples.is_empty(),
            "{name} has no samples in the sample fleet"
        );
    }
}

#[test]
fn metrics_parse_strictly_and_every_dashboard_query_uses_an_exported_metric() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = drover_hub::metrics::sample::build(dir.path(), 12, 2).unwrap();
    let text =
        drover_hub::metrics::render(&fleet.read, &fleet.telemetry, &fleet.mirrors, fleet.now_ms)
            .unwrap();
    let body = prom_text::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    check_conventions(&body);
    assert_eq!(body.value("drover_devices", &[]), Some(12.0));
    assert!(body.families.len() >= 50, "{:?}", body.families.keys());

    let queries = grafana::queries(&dashboard_json());
    assert!(queries.len() >= 40, "{} queries", queries.len());
    let mut used = BTreeSet::new();
    for q in &queries {
        let s = grafana::selectors(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert!(!s.is_empty(), "no metric in {q}");
        used.extend(s);
    }
    let metrics: BTreeSet<&str> = used.iter().map(|s| s.metric.as_str()).collect();
    assert!(metrics.len() >= 35, "{metrics:?}");
    let missing = unknown(&used, &body);
    assert!(
        missing.is_empty(),
        "the dashboard uses what the hub does not export: {missing:?}"
    );
}

#[test]
fn the_dashboard_check_catches_a_wrong_metric_or_label() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = drover_hub::metrics::sample::build(dir.path(), 2, 1).unwrap();
    let text =
        drover_hub::metrics::render(&fleet.read, &fleet.telemetry, &fleet.mirrors, fleet.now_ms)
            .unwrap();
    let body = prom_text::parse(&text).unwrap();
    let check = |q: &str| unknown(&grafana::selectors(q).unwrap().into_iter().collect(), &body);
    let q = r#"sum by (le) (rate(drover_hub_apply_duration_seconds_bucket{job=~"$job"}[5m]))"#;
    assert_eq!(
        check(q),
        ["label job of drover_hub_apply_duration_seconds_bucket"]
    );
    let q = r#"rate(drover_container_cpu_seconds{device="a, b"}[$__rate_interval]) / on (device) drover_device_up"#;
    assert_eq!(check(q), ["metric drover_container_cpu_seconds"]);
    assert!(check("label_values(drover_device_up, device)").is_empty());
    assert_eq!(
        check("label_values(drover_device_up, container)"),
        ["label container of drover_device_up"]
    );
    assert!(check(r#"topk(5, drover_device_generation_lag > 0) * 100"#).is_empty());
}

#[test]
fn the_strict_parser_refuses_what_the_format_forbids() {
    let bad = [
        "a 1",                          // no final newline
        "a{b=\"1\"} 1\na{b=\"1\"} 2\n", // a series twice
        "a 1\nb 1\na 2\n",              // a family split in two groups
        "a 1\n# TYPE a gauge\n",        // TYPE after samples
        "a{b=1} 1\n",                   // unquoted value
        "a{b=\"\\x\"} 1\n",             // bad escape
        "1a 1\n",                       // bad name
        "a one\n",                      // bad value
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for b in bad {
        assert!(prom_text::parse(b).is_err(), "accepted {b:?}");
    }
    let good = "# HELP a x \\\\ y\n# TYPE a counter\na{b=\"q\\\"\\n\"} +Inf 17\n\n# c\nb NaN\n";
    let e = prom_text::parse(good).unwrap();
    assert_eq!(e.families["a"].samples[0].labels["b"], "q\"\n");
}

/// `GET path` on the hub's API port with `extra` header lines: (status, content type,
/// body).
fn get(api: &str, path: &str, extra: &str) -> (u16, String, String) {
    let (head, body) = get_bytes(api, path, extra);
    let body = String::from_utf8(body).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, ctype, body)
}

/// `/metrics` with the read-only token, as a Prometheus scraper sends it.
fn scrape(hub: &TestHub) -> Exposition {
    let auth = format!("Authorization: Bearer {}\r\n", hub.read_token());
    let (status, ctype, body) = get(&hub.api, "/metrics", &auth);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    prom_text::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

#[test]
fn a_real_hub_serves_a_real_agents_presence_and_restarts() {
    if !require_root("a_real_hub_serves_a_real_agents_presence_and_restarts") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let mut agent = TestAgent::new("metrics_e2e");
    agent.connect_to_hub(&hub.device_add("metrics-e2e", &["role=crashy"]));
    agent.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").expect("busybox layout");
    let yaml = format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: crashy}}\nspec:\n  selector: {{matchLabels: {{role: crashy}}}}\n  template:\n    spec:\n      restartPolicy: Always\n      stopGracePeriod: 1s\n      containers:\n        - name: main\n          image: oci:{}:latest\n          command: [/bin/sh, -c, \"sleep 1; exit 3\"]\n",
        image.display()
    );
    let (code, _, err) = hub.apply("crashy.yaml", &yaml);
    assert_eq!(code, 0, "apply: {err}");
    let dev = [("device", "metrics-e2e")];
    let wl = [("device", "metrics-e2e"), ("workload", "crashy")];
    let body = wait_for(
        "the device online and its workload restarted in /metrics",
        T,
        || {
            let b = scrape(&hub);
            let restarts = b.value("drover_workload_restarts", &wl)?;
            (b.value("drover_device_up", &dev) == Some(1.0) && restarts >= 1.0).then_some(b)
        },
    );
    assert_eq!(body.value("drover_devices", &[]), Some(1.0));
    assert_eq!(body.value("drover_devices_online", &[]), Some(1.0));
    let c = [
        ("device", "metrics-e2e"),
        ("workload", "crashy"),
        ("container", "main"),
    ];
    assert!(
        body.value("drover_container_restarts", &c)
            .is_some_and(|r| r >= 1.0)
    );
    assert_eq!(
        body.value("drover_deployment_devices", &[("deployment", "crashy")]),
        Some(1.0)
    );
    // What `get devices` says agrees (restarts only grow between the two reads).
    let devices = hub.devices();
    let reported = devices[0]["workloads"][0]["restarts"].as_f64().unwrap();
    assert!(
        reported >= body.value("drover_workload_restarts", &wl).unwrap(),
        "{devices}"
    );
    assert!(
        body.value("drover_hub_status_accepted_total", &[])
            .is_some_and(|n| n >= 1.0)
    );

    agent.stop();
    let body = wait_for("the device offline in /metrics", T, || {
        let body = scrape(&hub);
        (body.value("drover_device_up", &dev) == Some(0.0)).then_some(body)
    });
    // Offline: its workload is not ready (as a pod on an unreachable node), and its last
    // sample is not shown as its usage now.
    assert_eq!(body.value("drover_workload_ready", &wl), Some(0.0));
    assert_eq!(body.value("drover_workloads_ready", &[]), Some(0.0));
    assert_eq!(body.value("drover_device_cpu_ratio", &dev), None);
}

fn publish(hub: &TestHub, device: &str, cred: &str, payload: &[u8]) {
    let file = hub.dir.path().join("sample.bin");
    std::fs::write(&file, payload).unwrap();
    let port = hub.broker_port.to_string();
    let topic = format!("drover/v1/dev/{device}/telemetry");
    let st = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-i",
            device,
            "-u",
            device,
            "-P",
            cred,
        ])
        .args(["-t", &topic, "-f"])
        .arg(&file)
        .status()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    assert!(st.success(), "mosquitto_pub failed");
}

fn sample(seq: u64, cpu_ms: u64) -> Telemetry {
    let container = ContainerUsage {
        name: Name::new("app").unwrap(),
        cpu_ms,
        memory_kib: 10 * 1024,
        memory_peak_kib: 12 * 1024,
        pids: 4,
        oom_kills: 1,
        restarts: 0,
    };
    Telemetry {
        seq,
        time_s: drover_hub::now_ms() / 1000,
        device: DeviceUsage {
            cpu_permille: 375,
            memory_used_kib: 512 * 1024,
            temperature_decicelsius: Some(481),
            net_rx_bytes: 123_456,
            ..Default::default()
        },
        workloads: vec![WorkloadUsage {
            name: Name::new("sensor").unwrap(),
            containers: vec![container],
        }],
        dropped: 2,
    }
}

#[test]
fn telemetry_a_real_hub_verified_shows_in_metrics() {
    let mut hub = TestHub::new();
    hub.start();
    let cred = credential(&hub.device_add("pi-m", &[]));
    let pw = device_password(&cred);
    let dev = Name::new("pi-m").unwrap();
    // A status first: an offline device's usage is not exported.
    let status = drover_protocol::DeviceStatus {
        device: dev.clone(),
        observed_generation: 0,
        time_ms: drover_hub::now_ms(),
        workloads: vec![],
        capacity: Default::default(),
    };
    let sealed = drover_protocol::auth::seal_status(&status, cred.as_bytes()).unwrap();
    hub.mqtt_publish("pi-m", &pw, "drover/v1/dev/pi-m/status", &sealed);
    wait_for("the device online", T, || {
        (hub.devices()[0]["online"] == true).then_some(())
    });
    publish(
        &hub,
        "pi-m",
        &pw,
        &seal_telemetry(&sample(1, 2_500), &dev, cred.as_bytes()).unwrap(),
    );
    let forged = seal_telemetry(&sample(2, 0), &dev, b"guessed").unwrap();
    publish(&hub, "pi-m", &pw, &forged);
    let rejected = [("kind", "telemetry"), ("reason", "bad_mac")];
    let body = wait_for("the sample and the forgery in /metrics", T, || {
        let b = scrape(&hub);
        (b.value("drover_hub_messages_rejected_total", &rejected) == Some(1.0)).then_some(b)
    });
    let c = [
        ("device", "pi-m"),
        ("workload", "sensor"),
        ("container", "app"),
    ];
    assert_eq!(
        body.value("drover_container_cpu_seconds_total", &c),
        Some(2.5)
    );
    assert_eq!(
        body.value("drover_container_memory_bytes", &c),
        Some(10.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        body.value("drover_container_memory_peak_bytes", &c),
        Some(12.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        body.value("drover_container_oom_kills_total", &c),
        Some(1.0)
    );
    let d = [("device", "pi-m")];
    assert_eq!(body.value("drover_device_cpu_ratio", &d), Some(0.375));
    assert_eq!(
        body.value("drover_device_memory_used_bytes", &d),
        Some(512.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        body.value("drover_device_temperature_celsius", &d),
        Some(48.1)
    );
    assert_eq!(
        body.value("drover_device_network_receive_bytes_total", &d),
        Some(123_456.0)
    );
    assert_eq!(
        body.value("drover_device_telemetry_dropped_samples_total", &d),
        Some(2.0)
    );
    assert_eq!(
        body.value("drover_hub_telemetry_samples_accepted_total", &[]),
        Some(1.0)
    );
    // Every counter `get stats` shows is a series of /metrics (the quiet hub's counters do
    // not move between the two reads), `overloaded` drops and mirror drops included.
    let stats = hub.stats();
    let stats = stats.as_object().unwrap();
    assert!(
        stats.contains_key("telemetry_rejected_overloaded"),
        "{stats:?}"
    );
    let body = scrape(&hub);
    for (key, n) in stats {
        let (name, labels) = drover_hub::metrics::stat_series(key)
            .unwrap_or_else(|| panic!("get stats has {key}, /metrics does not"));
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            body.value(&name, &labels),
            n.as_f64(),
            "{key} as {name}{labels:?}"
        );
    }
    // Asked for gzip (as Prometheus asks), the same exposition arrives compressed.
    let auth = format!("Authorization: Bearer {}\r\n", hub.read_token());
    let (head, zipped) = get_bytes(
        &hub.api,
        "/metrics",
        &format!("{auth}Accept-Encoding: gzip\r\n"),
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-encoding: gzip"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        zipped.len() * 2 < text.len(),
        "{} of {}",
        zipped.len(),
        text.len()
    );
    let unzipped = prom_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        unzipped.families.keys().collect::<Vec<_>>(),
        body.families.keys().collect::<Vec<_>>()
    );
}

/// `GET path` with `extra` header lines: the head and the raw body (no chunked coding:
/// the hub sends `/metrics` with a length).
fn get_bytes(api: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
    let addr = api.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    (head, raw[at + 4..].to_vec())
}
