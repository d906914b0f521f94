//! `/metrics` tests: the pure fold on hand-built rows, and whole bodies rendered from a
//! real store, controller and telemetry cache (`sample`).

use std::collections::{BTreeMap, BTreeSet};

use drover_protocol::{DeviceStatus, Name, Phase, WorkloadStatus};

use super::fleet::{Inputs, facts};
use super::*;
use crate::store::StatusRow;

fn status_row(device: &str, observed: u64, workloads: Vec<WorkloadStatus>) -> StatusRow {
    StatusRow {
        status: Some(DeviceStatus {
            device: Name::new(device).unwrap(),
            observed_generation: observed,
            time_ms: 0,
            workloads,
            capacity: Default::default(),
        }),
        last_seen_ms: 1,
        presence: Some(true),
    }
}

fn running(name: &str, restarts: u32) -> WorkloadStatus {
    WorkloadStatus {
        name: Name::new(name).unwrap(),
        phase: Phase::Running,
        restarts,
        containers: vec![],
        last_error: None,
        reason: None,
        revision: 1,
        rolled_back: None,
    }
}

#[test]
fn facts_fold_devices_workloads_and_deployments() {
    let i = Inputs {
        devices: vec![("b".into(), false), ("a".into(), true)],
        statuses: BTreeMap::from([(
            "a".to_owned(),
            status_row("a", 3, vec![running("web", 2), running("old", 0)]),
        )]),
        generations: BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 2)]),
        deployments: vec!["web".into(), "db".into()],
        placement: BTreeMap::from([
            (
                "web".to_owned(),
                BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            ),
            ("db".to_owned(), BTreeSet::from(["a".to_owned()])),
        ]),
        rollouts: BTreeMap::new(),
    };
    let f = facts(&i);
    let names: Vec<&str> = f.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let a = &f.devices[0];
    assert!(a.online);
    assert_eq!(a.generation_lag, 2);
    // Placed first (db pending, web running), then reported but not placed.
    let ws: Vec<(&str, &str, bool, u32)> = a
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w.phase, w.ready, w.restarts))
        .collect();
    assert_eq!(
        ws,
        [
            ("db", "Pending", false, 0),
            ("web", "Running", true, 2),
            ("old", "Running", true, 0)
        ]
    );
    let b = &f.devices[1];
    assert_eq!((b.online, b.generation_lag), (false, 2));
    assert_eq!(b.workloads[0].phase, "Pending");
    let web = f.deployments.iter().find(|d| d.name == "web").unwrap();
    assert_eq!(
        (web.devices, web.ready, web.rollout.is_none()),
        (2, 1, true)
    );
    let db = f.deployments.iter().find(|d| d.name == "db").unwrap();
    assert_eq!((db.devices, db.ready), (1, 0));
}

/// The line of `name` with exactly these labels, as the body has it.
fn value(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn a_sample_fleet_renders_every_kind_of_family() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = sample::build(dir.path(), 20, 2).unwrap();
    let body = render(&fleet.read, &fleet.telemetry, &fleet.mirrors, fleet.now_ms).unwrap();
    let v = |s: &str| value(&body, s).unwrap_or_else(|| panic!("no {s} in:\n{body}"));
    assert_eq!(v("drover_devices"), "20");
    // Every 10th device never reported: 18 online.
    assert_eq!(v("drover_devices_online"), "18");
    assert_eq!(v(r#"drover_device_up{device="dev-00009"}"#), "0");
    assert_eq!(v(r#"drover_device_up{device="dev-00000"}"#), "1");
    assert_eq!(
        v(r#"drover_device_generation_lag{device="dev-00006"}"#),
        "1"
    );
    assert_eq!(
        v(r#"drover_device_generation_lag{device="dev-00000"}"#),
        "0"
    );
    assert_eq!(v(r#"drover_workloads{phase="Running"}"#), "18");
    assert_eq!(v(r#"drover_workloads{phase="Pending"}"#), "2");
    assert_eq!(
        v(r#"drover_workload_restarts{device="dev-00002",workload="web"}"#),
        "4"
    );
    let c = r#"{device="dev-00002",workload="web",container="c1"}"#;
    assert_eq!(v(&format!("drover_container_restarts{c}")), "2");
    // Cumulative 3001 ms of CPU in the second sample.
    assert_eq!(
        v(&format!("drover_container_cpu_seconds_total{c}")),
        "3.001"
    );
    assert_eq!(v(&format!("drover_container_memory_bytes{c}")), "20482048");
    assert_eq!(v(r#"drover_device_cpu_ratio{device="dev-00005"}"#), "0.005");
    assert_eq!(
        v(r#"drover_device_temperature_celsius{device="dev-00001"}"#),
        "45.5"
    );
    assert_eq!(v(r#"drover_device_throttled{device="dev-00004"}"#), "1");
    assert_eq!(v(r#"drover_device_throttled{device="dev-00001"}"#), "0");
    assert_eq!(v(r#"drover_rollout_revision{deployment="web"}"#), "2");
    assert_eq!(v(r#"drover_deployment_devices{deployment="web"}"#), "20");
    assert_eq!(v(r#"drover_hub_status_accepted_total"#), "18");
    assert_eq!(
        v(r#"drover_hub_messages_rejected_total{kind="status",reason="bad_mac"}"#),
        "0"
    );
    assert!(body.contains("# TYPE drover_container_cpu_seconds_total counter\n"));
    assert!(body.contains("# TYPE drover_hub_apply_duration_seconds histogram\n"));
}

#[test]
fn rejected_messages_are_counted_by_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = sample::build(dir.path(), 2, 1).unwrap();
    let now = fleet.now_ms;
    let bad = vec![
        (
            "drover/v1/dev/dev-00000/status".to_owned(),
            b"junk".to_vec(),
            now,
        ),
        (
            "drover/v1/dev/nobody/status".to_owned(),
            b"junk".to_vec(),
            now,
        ),
        (
            "drover/v1/dev/dev-00001/online".to_owned(),
            b"maybe".to_vec(),
            now,
        ),
    ];
    fleet.controller.ingest_batch(&bad, now);
    fleet.telemetry.count_rejected("replayed");
    let body = render(&fleet.read, &fleet.telemetry, &fleet.mirrors, now).unwrap();
    let v = |s: &str| value(&body, s).unwrap_or_else(|| panic!("no {s} in:\n{body}"));
    let r = "drover_hub_messages_rejected_total";
    assert_eq!(
        v(&format!(r#"{r}{{kind="status",reason="malformed"}}"#)),
        "1"
    );
    assert_eq!(
        v(&format!(r#"{r}{{kind="status",reason="unknown_device"}}"#)),
        "1"
    );
    assert_eq!(
        v(&format!(r#"{r}{{kind="presence",reason="malformed"}}"#)),
        "1"
    );
    assert_eq!(
        v(&format!(r#"{r}{{kind="telemetry",reason="replayed"}}"#)),
        "1"
    );
    assert_eq!(
        v(&format!(r#"{r}{{kind="telemetry",reason="bad_mac"}}"#)),
        "0"
    );
}

#[test]
fn applies_through_the_controller_thread_are_timed() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = sample::build(dir.path(), 1, 1).unwrap();
    let read = fleet.read;
    let handle = crate::controller::spawn(fleet.controller).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let yaml = "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  selector:\n    matchLabels: {role: db}\n  template:\n    spec:\n      containers:\n        - {name: main, image: registry.example/db:1}\n";
    for dry_run in [true, false] {
        let files = vec![crate::views::FileText {
            file: "db.yaml".into(),
            text: yaml.into(),
        }];
        rt.block_on(handle.ask(|reply| crate::controller::Command::Apply {
            files,
            dry_run,
            reply,
        }))
        .unwrap();
    }
    // The controller replies before it records the time: wait for the record.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let body = render(&read, &fleet.telemetry, &fleet.mirrors, crate::now_ms()).unwrap();
        let n = value(&body, "drover_hub_apply_duration_seconds_count").unwrap();
        if n != "0" || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // The dry run is not counted.
    assert_eq!(
        value(&body, "drover_hub_apply_duration_seconds_count").unwrap(),
        "1"
    );
    assert_eq!(
        value(
            &body,
            r#"drover_hub_apply_duration_seconds_bucket{le="+Inf"}"#
        )
        .unwrap(),
        "1"
    );
}

#[test]
fn every_get_stats_counter_is_a_series_with_the_same_value() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = sample::build(dir.path(), 3, 1).unwrap();
    fleet.telemetry.count_rejected("overloaded");
    let body = render(&fleet.read, &fleet.telemetry, &fleet.mirrors, fleet.now_ms).unwrap();
    let mut stats = fleet.read.lock().unwrap().stats().unwrap();
    crate::telemetry::add_stats(&mut stats, &fleet.telemetry.counters(), 0);
    assert!(stats.contains_key("telemetry_rejected_overloaded"));
    assert!(stats.contains_key("mirror_dropped"));
    for (key, n) in &stats {
        let (name, labels) = stat_series(key).unwrap_or_else(|| panic!("{key} not in /metrics"));
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let series = if labels.is_empty() {
            name
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        assert_eq!(
            value(&body, &series),
            Some(n.to_string()),
            "{key} as {series}"
        );
    }
    let r = r#"drover_hub_messages_rejected_total{kind="telemetry",reason="overloaded"}"#;
    assert_eq!(value(&body, r).as_deref(), Some("1"));
}

#[test]
fn health_labels_are_spelled_as_the_json_api_and_none_counts_healthy_while_running() {
    use drover_protocol::health::Health;
    for h in [
        Health::None,
        Health::Starting,
        Health::Healthy,
        Health::Unhealthy,
    ] {
        assert_eq!(serde_json::to_value(h).unwrap(), health_label(h));
    }
    assert!(is_healthy(Phase::Running, Health::None));
    assert!(is_healthy(Phase::Running, Health::Healthy));
    assert!(!is_healthy(Phase::Running, Health::Starting));
    assert!(!is_healthy(Phase::Running, Health::Unhealthy));
    assert!(!is_healthy(Phase::BackOff, Health::None));
    let dir = tempfile::tempdir().unwrap();
    let fleet = sample::build(dir.path(), 5, 1).unwrap();
    let body = render(&fleet.read, &fleet.telemetry, &fleet.mirrors, fleet.now_ms).unwrap();
    // Device 4 reports its container unhealthy; the others healthy.
    let v = |s: &str| value(&body, s).unwrap_or_else(|| panic!("no {s} in:\n{body}"));
    assert_eq!(v(r#"drover_workloads_by_health{health="Unhealthy"}"#), "1");
    assert_eq!(v(r#"drover_workloads_by_health{health="None"}"#), "0");
    assert_eq!(
        v(r#"drover_workload_healthy{device="dev-00004",workload="web"}"#),
        "0"
    );
}
