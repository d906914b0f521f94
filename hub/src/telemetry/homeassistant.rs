//! Home Assistant MQTT discovery (`dashboards.home_assistant = true`): the retained config
//! messages that make every device and its workloads appear in Home Assistant, built from
//! the telemetry the hub accepts. Pure: a sample's view in, the messages to publish out;
//! the telemetry thread publishes them through the JSON mirrors' queue.
//!
//! Per device (one HA device, `identifiers: ["drover_{device}"]`, manufacturer Drover):
//! sensors for CPU %, memory used, disk free and — when the board reports one — the SoC
//! temperature, all read from `…/telemetry/json`; a `connectivity` binary sensor on the
//! agent's retained `…/online`. Per workload a `problem` binary sensor from
//! `…/status/json`: on unless the workload runs with every container ready and none
//! unhealthy and no reason (crash loop, waiting) — `problem` rather than `running`,
//! because a running but unhealthy or not-ready workload is exactly what people want to
//! be told about. Per container sensors for CPU % and memory. Every entity but `online`
//! is unavailable while the agent's presence says `offline`.
//!
//! Topics: `{prefix}/{sensor|binary_sensor}/drover_{device}/{object_id}/config`; object
//! ids `cpu`, `memory_used`, `disk_free`, `temperature`, `online`, `wl_{w}_health`,
//! `ct_{w}_{c}_cpu`, `ct_{w}_{c}_memory` (names hold no `_`, so these never collide);
//! `unique_id` is `drover_{device}_{object_id}`. The deprecated `object_id` payload option
//! is not sent (HA names entities after device and entity name).
//!
//! Configs are sent when a device is first seen (after a hub start too: rumqttd keeps no
//! retained messages across restarts) and when its set of entities changes; entities that
//! disappeared get an empty retained payload, which removes them. Never per sample, but
//! all of them again (see `rediscover`) when Home Assistant announces itself on
//! `{prefix}/status` and when the hub reconnects to the broker.
//! Names in templates are `Name`s (`[a-z0-9-]`), so they cannot break a Jinja string.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use drover_protocol::{Name, topics};
use serde_json::{Value, json};

use super::view::DeviceTelemetryView;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HomeAssistantError {
    #[error(
        "dashboards.home_assistant_prefix {0:?}: {1} (expected a topic such as \"homeassistant\")"
    )]
    BadPrefix(String, &'static str),
}

/// Checks the discovery prefix: a plain topic (no wildcards, no empty level, no `$`).
pub fn check_prefix(prefix: &str) -> Result<(), HomeAssistantError> {
    let bad = |why| Err(HomeAssistantError::BadPrefix(prefix.to_owned(), why));
    if prefix.is_empty() || prefix.split('/').any(str::is_empty) {
        return bad("empty, or with an empty level");
    }
    if prefix.contains(['+', '#']) || prefix.starts_with('$') {
        return bad("no wildcards and no `$` topics");
    }
    if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("no spaces or control characters");
    }
    Ok(())
}

/// One discovery message: `Some(config)` JSON, or `None` for an empty retained payload
/// (removes the entity).
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryMsg {
    pub topic: String,
    pub config: Option<Value>,
}

impl DiscoveryMsg {
    /// The MQTT payload: the config as JSON, or nothing.
    pub fn payload(&self) -> Vec<u8> {
        self.config
            .as_ref()
            .map(|c| serde_json::to_vec(c).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// What was published per device: topic → config.
pub struct Discovery {
    prefix: String,
    published: HashMap<String, BTreeMap<String, Value>>,
}

impl Discovery {
    /// `prefix` must pass [`check_prefix`].
    pub fn new(prefix: &str) -> Discovery {
        Discovery {
            prefix: prefix.to_owned(),
            published: HashMap::new(),
        }
    }

    /// The messages a new sample calls for: nothing when the device's entities are those
    /// already published; else the configs of new entities and removals of vanished ones.
    pub fn update(&mut self, view: &DeviceTelemetryView) -> Vec<DiscoveryMsg> {
        let Ok(device) = Name::new(view.device.as_str()) else {
            return Vec::new();
        };
        let now = configs(&self.prefix, &device, view);
        let before = self.published.get(view.device.as_str());
        if before.is_some_and(|b| b.keys().eq(now.keys())) {
            return Vec::new();
        }
        let mut out: Vec<DiscoveryMsg> = before
            .into_iter()
            .flat_map(|b| b.keys())
            .filter(|t| !now.contains_key(*t))
            .map(|t| DiscoveryMsg {
                topic: t.clone(),
                config: None,
            })
            .collect();
        for (topic, config) in &now {
            if before.is_none_or(|b| !b.contains_key(topic)) {
                out.push(DiscoveryMsg {
                    topic: topic.clone(),
                    config: Some(config.clone()),
                });
            }
        }
        self.published.insert(view.device.clone(), now);
        out
    }

    /// Forgets what was published for `device` (a message was dropped): its next sample
    /// sends every config again.
    pub fn forget(&mut self, device: &str) {
        self.published.remove(device);
    }

    /// Every device with configs published, sorted (what a republish walks through).
    pub fn devices(&self) -> Vec<String> {
        let mut d: Vec<String> = self.published.keys().cloned().collect();
        d.sort();
        d
    }

    /// The configs published for `device`, to send again (after Home Assistant's birth
    /// message or a reconnect to the broker); empty for a device not (or no more) known.
    pub fn configs_of(&self, device: &str) -> Vec<DiscoveryMsg> {
        self.published
            .get(device)
            .into_iter()
            .flatten()
            .map(|(topic, config)| DiscoveryMsg {
                topic: topic.clone(),
                config: Some(config.clone()),
            })
            .collect()
    }
}

/// Home Assistant's birth (and will) topic, `{prefix}/status`: it publishes `online`
/// there when it starts, and integrations send their discovery configs again.
pub fn birth_topic(prefix: &str) -> String {
    format!("{prefix}/status")
}

/// The birth payload that asks for the configs again (`offline` is HA's will: ignored).
pub const BIRTH_PAYLOAD: &[u8] = b"online";

/// Every entity `view` calls for: discovery topic → config.
pub fn configs(prefix: &str, device: &Name, view: &DeviceTelemetryView) -> BTreeMap<String, Value> {
    let e = Entities { prefix, device };
    let tele = topics::telemetry_json(device);
    let mut out = BTreeMap::new();
    let mut add = |(topic, config): (String, Value)| {
        out.insert(topic, config);
    };
    add(e.sensor(
        "cpu",
        "CPU",
        &tele,
        "{{ value_json.cpu_percent }}",
        Unit::Percent,
    ));
    let mem = "{{ value_json.memory_used_bytes }}";
    add(e.sensor("memory_used", "Memory used", &tele, mem, Unit::Bytes));
    let disk = "{{ value_json.disk_free_bytes }}";
    add(e.sensor("disk_free", "Disk free", &tele, disk, Unit::Bytes));
    if view.temperature_celsius.is_some() {
        let t = "{{ value_json.temperature_celsius }}";
        add(e.sensor("temperature", "Temperature", &tele, t, Unit::Celsius));
    }
    add(e.online());
    let workloads: BTreeSet<&str> = view
        .containers
        .iter()
        .map(|c| c.workload.as_str())
        .collect();
    for w in workloads {
        add(e.health(w));
    }
    for c in &view.containers {
        let (w, n) = (c.workload.as_str(), c.container.as_str());
        let pick = format!(
            "{{% set c = value_json.containers | selectattr('workload', 'equalto', '{w}') | selectattr('container', 'equalto', '{n}') | list | first | default(none) %}}"
        );
        let cpu = format!("{pick}{{{{ c.cpu_percent if c is not none else none }}}}");
        let id = format!("ct_{w}_{n}_cpu");
        add(e.sensor(&id, &format!("{w}/{n} CPU"), &tele, &cpu, Unit::Percent));
        let mem = format!("{pick}{{{{ c.memory_bytes if c is not none else none }}}}");
        let id = format!("ct_{w}_{n}_memory");
        add(e.sensor(&id, &format!("{w}/{n} memory"), &tele, &mem, Unit::Bytes));
    }
    out
}

#[derive(Clone, Copy)]
enum Unit {
    Percent,
    Bytes,
    Celsius,
}

struct Entities<'a> {
    prefix: &'a str,
    device: &'a Name,
}

impl Entities<'_> {
    fn topic(&self, component: &str, object_id: &str) -> String {
        format!(
            "{}/{component}/drover_{}/{object_id}/config",
            self.prefix, self.device
        )
    }

    /// The keys every entity of this device shares.
    fn base(&self, object_id: &str, name: &str) -> serde_json::Map<String, Value> {
        let d = self.device.as_str();
        let v = json!({
            "name": name,
            "unique_id": format!("drover_{d}_{object_id}"),
            "device": {
                "identifiers": [format!("drover_{d}")],
                "name": d,
                "manufacturer": "Drover",
                "model": "Drover edge device",
            },
            "origin": {
                "name": "Drover hub",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        });
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    fn availability(&self) -> Value {
        json!([{
            "topic": topics::online(self.device),
            "payload_available": "online",
            "payload_not_available": "offline",
        }])
    }

    fn sensor(
        &self,
        object_id: &str,
        name: &str,
        state_topic: &str,
        template: &str,
        unit: Unit,
    ) -> (String, Value) {
        let mut m = self.base(object_id, name);
        m.insert("state_topic".into(), state_topic.into());
        m.insert("value_template".into(), template.into());
        m.insert("state_class".into(), "measurement".into());
        let (uom, class, precision) = match unit {
            Unit::Percent => ("%", None, 1),
            Unit::Bytes => ("B", Some("data_size"), 0),
            Unit::Celsius => ("°C", Some("temperature"), 1),
        };
        m.insert("unit_of_measurement".into(), uom.into());
        if let Some(c) = class {
            m.insert("device_class".into(), c.into());
        }
        m.insert("suggested_display_precision".into(), precision.into());
        m.insert("availability".into(), self.availability());
        (self.topic("sensor", object_id), Value::Object(m))
    }

    fn online(&self) -> (String, Value) {
        let mut m = self.base("online", "Online");
        m.insert("state_topic".into(), topics::online(self.device).into());
        m.insert("payload_on".into(), "online".into());
        m.insert("payload_off".into(), "offline".into());
        m.insert("device_class".into(), "connectivity".into());
        (self.topic("binary_sensor", "online"), Value::Object(m))
    }

    fn health(&self, workload: &str) -> (String, Value) {
        let id = format!("wl_{workload}_health");
        let mut m = self.base(&id, &format!("{workload} health"));
        let template = format!(
            "{{% set w = value_json.workloads | selectattr('name', 'equalto', '{workload}') | list | first | default(none) %}}\
             {{% if w is none %}}None\
             {{% elif w.phase == 'Running' and w.reason is none \
             and w.containers | rejectattr('ready') | list | length == 0 \
             and w.containers | selectattr('health', 'equalto', 'Unhealthy') | list | length == 0 %}}OFF\
             {{% else %}}ON{{% endif %}}"
        );
        m.insert(
            "state_topic".into(),
            topics::status_json(self.device).into(),
        );
        m.insert("value_template".into(), template.into());
        m.insert("payload_on".into(), "ON".into());
        m.insert("payload_off".into(), "OFF".into());
        m.insert("device_class".into(), "problem".into());
        m.insert("availability".into(), self.availability());
        (self.topic("binary_sensor", &id), Value::Object(m))
    }
}

#[cfg(test)]
#[path = "homeassistant_tests.rs"]
mod tests;
