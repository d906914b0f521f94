//! Registering devices: one (`device add`) or thousands at once (`device import FILE`,
//! CSV or YAML). Registration and the devices' first desired states are one transaction:
//! all or nothing. Each device gets a fresh random credential; the hub keeps the keys
//! derived from it (`drover_protocol::keys::DeviceKeys`) in the shared map.

use std::collections::BTreeMap;

use drover_protocol::Name;
use drover_protocol::keys::DeviceKeys;
use drover_protocol::manifest::ManifestError;

use super::{Controller, ControllerError};
use crate::fleet::{self, DeviceEntry, Object, RESERVED_DEVICE_PREFIX};
use crate::keys;
use crate::store::{DeviceRow, Event, EventReason};
use crate::views::{DeviceAdded, FileText, labels_string};

/// Devices one import may register.
pub const MAX_IMPORT: usize = 100_000;

impl Controller {
    /// Registers a device with a fresh credential and gives it its first desired state.
    pub fn add_device(
        &mut self,
        name: &str,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Result<DeviceAdded, ControllerError> {
        let name = check_device_name(name)?;
        check_labels(&labels).map_err(ControllerError::Invalid)?;
        let mut added = self.register(vec![(name, labels)], now_ms)?;
        added.pop().ok_or(ControllerError::Stopped)
    }

    /// Registers every device listed in a CSV (`name,labels` with labels `k=v;k=v`) or
    /// YAML (`kind: Device` documents) file; any error names file and line, and registers
    /// nothing.
    pub fn import_devices(
        &mut self,
        file: &FileText,
        now_ms: u64,
    ) -> Result<Vec<DeviceAdded>, ControllerError> {
        let list = parse_device_list(file)?;
        self.register(list, now_ms)
    }

    fn register(
        &mut self,
        list: Vec<(Name, BTreeMap<String, String>)>,
        now_ms: u64,
    ) -> Result<Vec<DeviceAdded>, ControllerError> {
        let mut next = self.snapshot.clone();
        let mut rows = Vec::with_capacity(list.len());
        for (name, labels) in list {
            if next.devices.contains_key(&name) {
                return Err(ControllerError::Exists(name.to_string()));
            }
            if self.store.device_revoked(name.as_str())?.is_some() {
                return Err(ControllerError::NameTaken {
                    name: name.to_string(),
                    kind: "revoked device (kept for audit; choose another name)",
                });
            }
            if self.is_client(name.as_str()) {
                return Err(ControllerError::NameTaken {
                    name: name.to_string(),
                    kind: "client",
                });
            }
            let entry = DeviceEntry {
                labels: std::sync::Arc::new(labels.clone()),
                ..DeviceEntry::default()
            };
            next.devices.insert(name.clone(), entry);
            rows.push(DeviceRow {
                name: name.to_string(),
                labels,
                credential: keys::new_credential()?,
                created_ms: now_ms,
            });
        }
        // The first desired states are sealed to the new devices' keys at commit: known
        // before it, taken back if it fails.
        self.set_keys(&rows, true);
        let committed = self.commit(next, now_ms, |s, _| {
            for row in &rows {
                s.insert_device(row)?;
                let msg = format!("registered with labels {}", labels_string(&row.labels));
                s.add_event(&Event::device(
                    now_ms,
                    &row.name,
                    EventReason::Registered,
                    msg,
                ))?;
            }
            Ok(())
        });
        if let Err(e) = committed {
            self.set_keys(&rows, false);
            return Err(e);
        }
        tracing::info!(devices = rows.len(), "devices registered");
        let total = self.snapshot.devices.len();
        if let Some(w) =
            crate::broker::capacity_warning(total).filter(|_| self.settings.embedded_broker)
        {
            tracing::warn!("{w}");
        }
        Ok(rows
            .into_iter()
            .map(|r| self.device_added(&r.name, r.credential))
            .collect())
    }

    /// Adds (or, after a failed commit, removes) the derived keys of `rows` in the map the
    /// broker, the registry, the verifiers and the sealing read.
    fn set_keys(&self, rows: &[DeviceRow], add: bool) {
        let mut creds = self.creds.write().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            if add {
                let keys = DeviceKeys::from_credential(row.credential.as_bytes());
                creds.insert(row.name.clone(), keys);
            } else {
                creds.remove(&row.name);
            }
        }
    }

    fn device_added(&self, name: &str, credential: String) -> DeviceAdded {
        let public_key = self.public_key();
        let broker = self.settings.device_broker.clone();
        // The fleet CA the agent pins for mqtts:// and https:// (a TOML literal string).
        let ca = self
            .settings
            .device_ca
            .as_deref()
            .map_or(String::new(), |pem| {
                format!("ca = '''\n{}\n'''\n", pem.trim_end())
            });
        let mqtt = drover_protocol::keys::mqtt_password(credential.as_bytes());
        let config = format!(
            "# Drover agent configuration for device {name:?}: a complete file, to be installed\n\
             # as /etc/drover/agent.toml (mode 0600: it holds the device's credential). Every\n\
             # other setting keeps its default (see configs/agent.toml). To merge it into an\n\
             # existing file instead, `device` must go above the first [section].\n\
             # `credential` never leaves the device: the agent derives from it (HKDF-SHA256) its\n\
             # MQTT password, its registry password, the key of its statuses and the X25519 key\n\
             # its desired state is sealed to; only the two passwords are sent. For Mosquitto's\n\
             # password_file (`broker.url`), this device's MQTT password is {mqtt}\n\
             device = \"{name}\"\n\n[hub]\nbroker = \"{broker}\"\ncredential = \"{credential}\"\npublic_key = \"{public_key}\"\n{ca}"
        );
        DeviceAdded {
            name: name.to_owned(),
            credential,
            public_key,
            broker,
            config,
        }
    }
}

pub(super) fn check_device_name(name: &str) -> Result<Name, ControllerError> {
    let name = Name::new(name).map_err(|e| ControllerError::Invalid(format!("device {e}")))?;
    if name.as_str().starts_with(RESERVED_DEVICE_PREFIX) {
        return Err(ControllerError::Invalid(format!(
            "device names starting with {RESERVED_DEVICE_PREFIX:?} are reserved for the hub"
        )));
    }
    Ok(name)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in labels {
        fleet::selector::check_label_key(k)
            .and_then(|()| fleet::selector::check_label_value(v))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

type DeviceList = Vec<(Name, BTreeMap<String, String>)>;

/// YAML (by extension, or text starting like a manifest) or CSV.
fn parse_device_list(file: &FileText) -> Result<DeviceList, ControllerError> {
    let f = &file.file;
    let head = file.text.trim_start();
    let yaml = f.ends_with(".yaml")
        || f.ends_with(".yml")
        || head.starts_with("apiVersion")
        || head.starts_with("---");
    let list = if yaml {
        parse_yaml(file)?
    } else {
        parse_csv(file)?
    };
    if list.is_empty() {
        return Err(at(f, 1, 1, format!("no devices in {f}")).into());
    }
    if list.len() > MAX_IMPORT {
        let msg = format!("{} devices in one import; at most {MAX_IMPORT}", list.len());
        return Err(at(f, 1, 1, msg).into());
    }
    Ok(list)
}

fn parse_yaml(file: &FileText) -> Result<DeviceList, ControllerError> {
    // parse_set also refuses a device listed twice, with both positions.
    let objects = fleet::parse_set(&[(file.file.clone(), file.text.clone())])?;
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let Object::Device(d) = o else {
            let msg = format!(
                "device import takes only Device objects; apply Deployment {:?} with `drover-hub apply -f`",
                o.name().as_str()
            );
            return Err(at(&file.file, 1, 1, msg).into());
        };
        check_device_name(d.name.as_str())?;
        out.push((d.name, d.labels));
    }
    Ok(out)
}

fn parse_csv(file: &FileText) -> Result<DeviceList, ControllerError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(file.text.as_bytes());
    let f = &file.file;
    let headers = reader
        .headers()
        .map_err(|e| at(f, 1, 1, format!("cannot read the CSV header: {e}")))?
        .clone();
    let want = ["name", "labels"];
    if headers.is_empty() || headers.len() > 2 || headers.iter().zip(want).any(|(h, w)| h != w) {
        let msg =
            "expected the header line `name,labels` (labels: key=value pairs separated by `;`)";
        return Err(at(f, 1, 1, msg.to_owned()).into());
    }
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(1, |p| p.line());
            at(f, line, 1, format!("malformed CSV: {e}"))
        })?;
        let line = record.position().map_or(1, |p| p.line());
        let name = record.get(0).unwrap_or("");
        let name = check_device_name(name).map_err(|e| at(f, line, 1, e.to_string()))?;
        let labels = parse_labels(record.get(1).unwrap_or("")).map_err(|e| at(f, line, 1, e))?;
        if let Some(first) = seen.insert(name.clone(), line) {
            let msg = format!(
                "device {:?} is listed twice (first on line {first})",
                name.as_str()
            );
            return Err(at(f, line, 1, msg).into());
        }
        out.push((name, labels));
    }
    Ok(out)
}

/// `k=v;k2=v2` (empty: no labels).
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = fleet::parse_label(pair).map_err(|e| e.to_string())?;
        if out.contains_key(&k) {
            return Err(format!("label {k:?} is given twice"));
        }
        out.insert(k, v);
    }
    check_labels(&out)?;
    Ok(out)
}

fn at(file: &str, line: u64, column: u64, message: String) -> ManifestError {
    ManifestError {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}
