//! The controller: every change to the fleet goes through here. It validates, writes the
//! store in one transaction, recomputes placement and each device's desired state, and
//! hands signed desired states to the outbox (the MQTT publisher) in commit order.
//!
//! It is synchronous and owns no sockets: the HTTP handlers and the MQTT loop call it
//! (behind a mutex) and do the IO. It must never publish anything it has not committed.

mod ingest;
mod reconcile;
mod views;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use drover_protocol::Name;
use drover_protocol::codec::CodecError;
use drover_protocol::manifest::ManifestError;
use ed25519_dalek::SigningKey;
use tokio::sync::mpsc::UnboundedSender;

use crate::broker::{Credentials, HUB_CLIENT_ID};
use crate::fleet::{self, Object, RESERVED_DEVICE_PREFIX};
use crate::keys::{self, KeysError};
use crate::ratelimit::RateLimit;
use crate::store::{DeviceRow, Store, StoreError};
use crate::views::{ChangeReport, DeviceAdded, FileText};

pub use ingest::RejectReason;

/// Warnings about one device are logged at most this often.
const WARN_EVERY_MS: u64 = 60_000;

/// A retained QoS 1 message for the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What the controller asks the MQTT publisher to do, in order.
#[derive(Debug)]
pub enum Out {
    Publish(Publish),
    /// The client (re)connected: subscribe and republish every stored desired state.
    Connected,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("cannot encode a desired state: {0}")]
    Codec(#[from] CodecError),
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("device {0:?} is already registered")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
}

/// Static facts the controller needs from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub offline_after_ms: u64,
    /// Broker address put in agent config snippets.
    pub device_broker: String,
}

pub struct Controller {
    store: Store,
    key: SigningKey,
    creds: Credentials,
    settings: Settings,
    outbox: UnboundedSender<Out>,
    /// Placement warnings of the last reconcile, by deployment.
    warnings: BTreeMap<String, Vec<String>>,
    /// Rejection warnings (logs and events) per device.
    warn_limit: RateLimit,
}

impl Controller {
    /// Wraps an open store; loads every device credential (and the hub's own) into the
    /// shared map the broker checks.
    pub fn new(
        store: Store,
        key: SigningKey,
        hub_credential: String,
        settings: Settings,
        outbox: UnboundedSender<Out>,
    ) -> Result<Controller, ControllerError> {
        let mut map: HashMap<String, String> = store
            .devices()?
            .into_iter()
            .map(|d| (d.name, d.credential))
            .collect();
        map.insert(HUB_CLIENT_ID.to_owned(), hub_credential);
        Ok(Controller {
            store,
            key,
            creds: Arc::new(RwLock::new(map)),
            settings,
            outbox,
            warnings: BTreeMap::new(),
            warn_limit: RateLimit::new(WARN_EVERY_MS),
        })
    }

    /// The name → credential map the embedded broker authenticates against.
    pub fn credentials(&self) -> Credentials {
        self.creds.clone()
    }

    pub fn public_key(&self) -> String {
        keys::public_key_base64(&self.key.verifying_key())
    }

    /// Brings every device's desired state up to date (after a start or an upgrade).
    pub fn resync(&mut self, now_ms: u64) -> Result<(), ControllerError> {
        let (pubs, warnings) = self
            .store
            .atomically(|s| reconcile::reconcile(s, &self.key, &self.settings, now_ms))?;
        self.warnings = warnings;
        self.send(pubs);
        Ok(())
    }

    /// Applies a set of manifest files: all of them or, on any error, nothing.
    pub fn apply(
        &mut self,
        files: &[FileText],
        now_ms: u64,
    ) -> Result<ChangeReport, ControllerError> {
        let objects = parse(files)?;
        let registered: Vec<String> = self.store.devices()?.into_iter().map(|d| d.name).collect();
        for o in &objects {
            if let Object::Device(d) = o
                && !registered.iter().any(|r| r == d.name.as_str())
            {
                return Err(ControllerError::Invalid(format!(
                    "Device {:?} is not registered: run `drover-hub device add {}` first",
                    d.name.as_str(),
                    d.name
                )));
            }
        }
        let source = files
            .iter()
            .map(|f| f.file.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let (report, pubs, warnings) = self.store.atomically(|s| {
            let report = apply_objects(s, &objects, &source, now_ms)?;
            let (pubs, warnings) = reconcile::reconcile(s, &self.key, &self.settings, now_ms)?;
            Ok::<_, ControllerError>((report, pubs, warnings))
        })?;
        self.warnings = warnings;
        self.send(pubs);
        Ok(report)
    }

    /// Deletes the Deployments named in the files. `Device` objects are ignored: devices
    /// are not removed (nor their labels changed) by `delete`.
    pub fn delete(
        &mut self,
        files: &[FileText],
        now_ms: u64,
    ) -> Result<ChangeReport, ControllerError> {
        let objects = parse(files)?;
        let (report, pubs, warnings) = self.store.atomically(|s| {
            let mut report = ChangeReport::default();
            for o in &objects {
                let name = o.name().as_str();
                let line = match o {
                    Object::Deployment(_) if s.delete_deployment(name)? => {
                        s.add_event(now_ms, "deployment", name, "deleted")?;
                        format!("deployment/{name} deleted")
                    }
                    Object::Deployment(_) => format!("deployment/{name} not found"),
                    Object::Device(_) => format!("device/{name} skipped (devices are not deleted)"),
                };
                report.results.push(line);
            }
            let (pubs, warnings) = reconcile::reconcile(s, &self.key, &self.settings, now_ms)?;
            Ok::<_, ControllerError>((report, pubs, warnings))
        })?;
        self.warnings = warnings;
        self.send(pubs);
        Ok(report)
    }

    /// Registers a device with a fresh credential and gives it its first desired state.
    pub fn add_device(
        &mut self,
        name: &str,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Result<DeviceAdded, ControllerError> {
        let name = check_device_name(name)?;
        for (k, v) in &labels {
            fleet::selector::check_label_key(k)
                .and_then(|()| fleet::selector::check_label_value(v))
                .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        }
        let row = DeviceRow {
            name: name.to_string(),
            labels,
            credential: keys::new_credential()?,
            created_ms: now_ms,
        };
        let (pubs, warnings) = self.store.atomically(|s| {
            if !s.insert_device(&row)? {
                return Err(ControllerError::Exists(row.name.clone()));
            }
            s.add_event(now_ms, "device", &row.name, "registered")?;
            reconcile::reconcile(s, &self.key, &self.settings, now_ms)
        })?;
        self.warnings = warnings;
        if let Ok(mut map) = self.creds.write() {
            map.insert(row.name.clone(), row.credential.clone());
        }
        self.send(pubs);
        Ok(self.device_added(&name, row.credential))
    }

    /// Every stored signed desired state, for a republish after (re)connecting.
    pub fn all_desired(&self) -> Result<Vec<Publish>, ControllerError> {
        Ok(self
            .store
            .all_desired()?
            .into_iter()
            .filter_map(|(device, row)| {
                let name = Name::new(device).ok()?;
                Some(Publish {
                    topic: drover_protocol::topics::desired(&name),
                    payload: row.payload,
                })
            })
            .collect())
    }

    fn device_added(&self, name: &Name, credential: String) -> DeviceAdded {
        let public_key = self.public_key();
        let broker = self.settings.device_broker.clone();
        let config = format!(
            "device = \"{name}\"\n\n[hub]\nbroker = \"{broker}\"\ncredential = \"{credential}\"\npublic_key = \"{public_key}\"\n"
        );
        DeviceAdded {
            name: name.to_string(),
            credential,
            public_key,
            broker,
            config,
        }
    }

    fn send(&self, pubs: Vec<Publish>) {
        for p in pubs {
            // The receiver only goes away when the hub shuts down.
            let _ = self.outbox.send(Out::Publish(p));
        }
    }
}

fn parse(files: &[FileText]) -> Result<Vec<Object>, ControllerError> {
    let pairs: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.file.clone(), f.text.clone()))
        .collect();
    Ok(fleet::parse_set(&pairs)?)
}

fn check_device_name(name: &str) -> Result<Name, ControllerError> {
    let name = Name::new(name).map_err(|e| ControllerError::Invalid(format!("device {e}")))?;
    if name.as_str().starts_with(RESERVED_DEVICE_PREFIX) {
        return Err(ControllerError::Invalid(format!(
            "device names starting with {RESERVED_DEVICE_PREFIX:?} are reserved for the hub"
        )));
    }
    Ok(name)
}

/// Writes the objects of one apply set; one report line per object.
fn apply_objects(
    s: &Store,
    objects: &[Object],
    source: &str,
    now_ms: u64,
) -> Result<ChangeReport, ControllerError> {
    let mut report = ChangeReport::default();
    let labels: BTreeMap<String, _> = s
        .devices()?
        .into_iter()
        .map(|d| (d.name, d.labels))
        .collect();
    for o in objects {
        let name = o.name().as_str();
        let line = match o {
            Object::Deployment(d) => {
                let existed = s.deployments()?.iter().any(|(n, _, _)| n == name);
                let spec = serde_json::to_string(d)
                    .map_err(|e| ControllerError::Invalid(format!("deployment {name}: {e}")))?;
                let verb = match (existed, s.upsert_deployment(name, &spec, source, now_ms)?) {
                    (_, false) => "unchanged",
                    (true, true) => "configured",
                    (false, true) => "created",
                };
                if verb != "unchanged" {
                    s.add_event(now_ms, "deployment", name, verb)?;
                }
                format!("deployment/{name} {verb}")
            }
            Object::Device(d) if labels.get(name) == Some(&d.labels) => {
                format!("device/{name} unchanged")
            }
            Object::Device(d) => {
                s.set_labels(name, &d.labels)?;
                let msg = format!("labels set to {}", crate::views::labels_string(&d.labels));
                s.add_event(now_ms, "device", name, &msg)?;
                format!("device/{name} configured")
            }
        };
        report.results.push(line);
    }
    Ok(report)
}
