//! Every discovery payload checked against Home Assistant's documented MQTT discovery
//! schema (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery and the
//! `sensor.mqtt` / `binary_sensor.mqtt` platform pages), written out here as checks.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::telemetry::view::ContainerTelemetryView;

/// Sensor device classes with the units HA accepts for them (the ones we might use).
const SENSOR_UNITS: &[(&str, &[&str])] = &[
    ("temperature", &["°C", "°F", "K"]),
    (
        "data_size",
        &[
            "bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
            "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB",
        ],
    ),
];
const BINARY_SENSOR_CLASSES: &[&str] = &[
    "battery",
    "battery_charging",
    "carbon_monoxide",
    "cold",
    "connectivity",
    "door",
    "garage_door",
    "gas",
    "heat",
    "light",
    "lock",
    "moisture",
    "motion",
    "moving",
    "occupancy",
    "opening",
    "plug",
    "power",
    "presence",
    "problem",
    "running",
    "safety",
    "smoke",
    "sound",
    "tamper",
    "update",
    "vibration",
    "window",
];
const STATE_CLASSES: &[&str] = &["measurement", "total", "total_increasing"];
/// Keys the sensor / binary_sensor MQTT platforms document (full names; we send no
/// abbreviations).
const COMMON_KEYS: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "device_class",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "expire_after",
    "force_update",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "state_topic",
    "unique_id",
    "value_template",
];
const SENSOR_KEYS: &[&str] = &[
    "last_reset_value_template",
    "options",
    "suggested_display_precision",
    "state_class",
    "unit_of_measurement",
];
const BINARY_SENSOR_KEYS: &[&str] = &["off_delay", "payload_off", "payload_on"];
const DEVICE_KEYS: &[&str] = &[
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
];

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `<prefix>/<component>/[<node_id>/]<object_id>/config`; returns the component.
fn check_topic<'a>(prefix: &str, topic: &'a str) -> &'a str {
    let rest = topic
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or_else(|| panic!("{topic}: not under {prefix}/"));
    let levels: Vec<&str> = rest.split('/').collect();
    assert!(
        levels.len() == 3 || levels.len() == 4,
        "{topic}: expected <component>/[<node_id>/]<object_id>/config"
    );
    assert_eq!(levels.last(), Some(&"config"), "{topic}");
    for id in &levels[1..levels.len() - 1] {
        assert!(id_ok(id), "{topic}: {id:?} must match [a-zA-Z0-9_-]+");
    }
    levels[0]
}

fn check_entity(prefix: &str, topic: &str, c: &Value) {
    let component = check_topic(prefix, topic);
    let obj = c
        .as_object()
        .unwrap_or_else(|| panic!("{topic}: not an object"));
    let platform_keys = match component {
        "sensor" => SENSOR_KEYS,
        "binary_sensor" => BINARY_SENSOR_KEYS,
        other => panic!("{topic}: unexpected component {other}"),
    };
    for k in obj.keys() {
        assert!(
            COMMON_KEYS.contains(&k.as_str()) || platform_keys.contains(&k.as_str()),
            "{topic}: {k} is not a documented {component} option"
        );
    }
    let s = |k: &str| obj.get(k).and_then(Value::as_str);
    assert!(
        s("state_topic").is_some_and(|t| !t.contains(['+', '#'])),
        "{topic}: state_topic"
    );
    assert!(s("unique_id").is_some_and(id_ok), "{topic}: unique_id");
    assert!(s("name").is_some_and(|n| !n.is_empty()), "{topic}: name");
    let dev = obj["device"].as_object().expect("device");
    for k in dev.keys() {
        assert!(DEVICE_KEYS.contains(&k.as_str()), "{topic}: device.{k}");
    }
    let ids = dev["identifiers"].as_array().expect("device.identifiers");
    assert!(
        !ids.is_empty() && ids.iter().all(Value::is_string),
        "{topic}"
    );
    assert_eq!(dev["manufacturer"], "Drover");
    assert!(
        obj["origin"]["name"].is_string(),
        "{topic}: origin.name is required"
    );
    if let Some(a) = obj.get("availability") {
        for entry in a.as_array().expect("availability is a list") {
            assert!(entry["topic"].is_string(), "{topic}: availability[].topic");
        }
    }
    let class = s("device_class");
    if component == "sensor" {
        let unit = s("unit_of_measurement");
        if let Some(class) = class {
            let units = SENSOR_UNITS
                .iter()
                .find(|(c, _)| *c == class)
                .unwrap_or_else(|| panic!("{topic}: sensor device_class {class}"))
                .1;
            assert!(
                unit.is_some_and(|u| units.contains(&u)),
                "{topic}: {unit:?} for {class}"
            );
        }
        if let Some(sc) = s("state_class") {
            assert!(STATE_CLASSES.contains(&sc), "{topic}: state_class {sc}");
            assert!(unit.is_some(), "{topic}: a measurement needs a unit");
        }
    } else if let Some(class) = class {
        assert!(BINARY_SENSOR_CLASSES.contains(&class), "{topic}: {class}");
    }
}

fn view(
    device: &str,
    temperature: Option<f64>,
    containers: &[(&str, &str)],
) -> DeviceTelemetryView {
    DeviceTelemetryView {
        device: device.to_owned(),
        received_ms: 0,
        time_s: 0,
        seq: 1,
        cpu_percent: 12.5,
        load1: 0.1,
        memory_used_bytes: 1,
        memory_available_bytes: 1,
        disk_free_bytes: 1,
        temperature_celsius: temperature,
        throttled: None,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
        uptime_s: 1,
        agent_rss_bytes: 1,
        dropped_samples: 0,
        containers: containers
            .iter()
            .map(|(w, c)| ContainerTelemetryView {
                workload: (*w).to_owned(),
                container: (*c).to_owned(),
                cpu_percent: None,
                cpu_seconds: 0.0,
                memory_bytes: 0,
                memory_peak_bytes: 0,
                pids: 1,
                oom_kills: 0,
                restarts: 0,
            })
            .collect(),
    }
}

#[test]
fn every_payload_matches_the_documented_schema() {
    let v = view(
        "pi-1",
        Some(48.1),
        &[("sensor", "app"), ("sensor", "sidecar"), ("web", "main")],
    );
    let name = Name::new("pi-1").unwrap();
    let all = configs("homeassistant", &name, &v);
    // 4 device sensors + online + 2 workloads + 2 per container.
    assert_eq!(all.len(), 4 + 1 + 2 + 3 * 2);
    let mut unique = BTreeSet::new();
    for (topic, c) in &all {
        check_entity("homeassistant", topic, c);
        assert!(
            unique.insert(c["unique_id"].as_str().unwrap().to_owned()),
            "{topic}"
        );
    }
    let t = &all["homeassistant/sensor/drover_pi-1/temperature/config"];
    assert_eq!(
        (
            &t["device_class"],
            &t["unit_of_measurement"],
            &t["state_class"]
        ),
        (&json!("temperature"), &json!("°C"), &json!("measurement"))
    );
    assert_eq!(t["state_topic"], "drover/v1/dev/pi-1/telemetry/json");
    assert_eq!(t["availability"][0]["topic"], "drover/v1/dev/pi-1/online");
    let on = &all["homeassistant/binary_sensor/drover_pi-1/online/config"];
    assert_eq!(on["state_topic"], "drover/v1/dev/pi-1/online");
    assert_eq!(
        (&on["payload_on"], &on["payload_off"]),
        (&json!("online"), &json!("offline"))
    );
    assert_eq!(on["device_class"], "connectivity");
    assert!(
        on.get("availability").is_none(),
        "online must show offline, not unavailable"
    );
    let h = &all["homeassistant/binary_sensor/drover_pi-1/wl_sensor_health/config"];
    assert_eq!(h["state_topic"], "drover/v1/dev/pi-1/status/json");
    assert_eq!(h["device_class"], "problem");
    assert!(h["value_template"].as_str().unwrap().contains("'sensor'"));
    let m = &all["homeassistant/sensor/drover_pi-1/ct_web_main_memory/config"];
    assert_eq!(
        (&m["device_class"], &m["unit_of_measurement"]),
        (&json!("data_size"), &json!("B"))
    );
    assert_eq!(m["device"]["identifiers"][0], "drover_pi-1");
}

#[test]
fn unique_ids_differ_across_devices_and_names_cannot_collide() {
    let a = configs(
        "ha",
        &Name::new("a-b").unwrap(),
        &view("a-b", None, &[("c", "d")]),
    );
    let b = configs(
        "ha",
        &Name::new("a").unwrap(),
        &view("a", None, &[("b-c", "d")]),
    );
    let ids = |m: &BTreeMap<String, Value>| -> BTreeSet<String> {
        m.values()
            .map(|c| c["unique_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids(&a).is_disjoint(&ids(&b)));
    assert!(
        a.keys().all(|t| !t.contains("temperature")),
        "no temperature reported: no sensor"
    );
}

#[test]
fn configs_are_sent_once_and_removed_when_a_workload_goes() {
    let mut d = Discovery::new("ha");
    let first = d.update(&view("pi-1", None, &[("sensor", "app")]));
    assert_eq!(first.len(), 3 + 1 + 1 + 2);
    assert!(first.iter().all(|m| m.config.is_some()));
    assert!(
        d.update(&view("pi-1", None, &[("sensor", "app")]))
            .is_empty(),
        "no republish per sample"
    );
    let moved = d.update(&view("pi-1", None, &[("web", "main")]));
    let removed: BTreeSet<&str> = moved
        .iter()
        .filter(|m| m.config.is_none())
        .map(|m| m.topic.as_str())
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from([
            "ha/binary_sensor/drover_pi-1/wl_sensor_health/config",
            "ha/sensor/drover_pi-1/ct_sensor_app_cpu/config",
            "ha/sensor/drover_pi-1/ct_sensor_app_memory/config",
        ])
    );
    assert_eq!(moved.iter().filter(|m| m.config.is_some()).count(), 3);
    assert!(
        moved
            .iter()
            .all(|m| m.config.is_some() || m.payload().is_empty())
    );
    d.forget("pi-1");
    assert_eq!(
        d.update(&view("pi-1", None, &[("web", "main")])).len(),
        3 + 1 + 1 + 2
    );
}

#[test]
fn the_prefix_is_a_plain_topic() {
    assert_eq!(check_prefix("homeassistant"), Ok(()));
    assert_eq!(check_prefix("site/ha"), Ok(()));
    for bad in ["", "ha/", "/ha", "ha/#", "h+a", "$SYS", "h a"] {
        assert!(check_prefix(bad).is_err(), "{bad:?}");
    }
}
