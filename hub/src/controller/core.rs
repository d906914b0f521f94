//! The controller's state and the one path every change takes: plan on a candidate
//! snapshot, sign the changed devices, commit the change and the plan in one durable
//! transaction, then fold the candidate in and queue the publishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use drover_protocol::compat::decode_any;
use drover_protocol::keys::DeviceKeys;
use drover_protocol::{DesiredState, Name};
use ed25519_dalek::SigningKey;
use tokio::sync::mpsc::UnboundedSender;

use super::rollouts::persist_revisions;
use super::sign::{Signed, reseal_stored, sign_changes};
use super::{Command, ControllerError, Metrics, Out, Publish, Settings, SharedWarnings};
use crate::broker::{ClientCredentials, Credentials, HUB_CLIENT_ID};
use crate::fleet::{
    DesiredEntry, DeviceEntry, FleetPlan, FleetSnapshot, PlanEvent, plan, progress,
};
use crate::keys;
use crate::ratelimit::RateLimit;
use crate::registry::Registry;
use crate::store::{Event, EventReason, SeqFloors, Store};

/// Warnings about one device are logged at most this often.
const WARN_EVERY_MS: u64 = 60_000;

pub struct Controller {
    pub(super) store: Store,
    pub(super) snapshot: FleetSnapshot,
    /// The signed message of each device's current desired state, for republishing.
    pub(super) payloads: BTreeMap<Name, Vec<u8>>,
    pub(super) key: SigningKey,
    pub(super) creds: Credentials,
    /// Dashboard clients' broker logins, apart from `creds` (which verify device messages).
    pub(super) clients: ClientCredentials,
    pub(super) settings: Settings,
    pub(super) outbox: UnboundedSender<Out>,
    pub(super) warnings: SharedWarnings,
    pub(super) metrics: Arc<Metrics>,
    pub(super) registry: Option<Arc<Registry>>,
    /// Rejection warnings (logs and events) per device.
    pub(super) warn_limit: RateLimit,
    /// Retained desired states published again after someone overwrote them, per device
    /// (`controller/retained.rs`).
    pub(super) republish_limit: RateLimit,
    /// Highest status and presence sequence numbers accepted per device (`freshness.rs`).
    pub(super) floors: HashMap<String, SeqFloors>,
    /// When the hub last (re)connected to the broker, while it is still hearing from the
    /// devices again (see `Controller::catching_up`).
    pub(super) reconnected_ms: Option<u64>,
    /// JSON mirrors of accepted statuses (`…/status/json`).
    pub(super) mirrors: crate::telemetry::Mirrors,
    /// Change notifications for live views.
    pub(super) events: crate::events::Events,
    /// Secrets and ConfigMaps with their values (`config_objects.rs`), and the box that
    /// keeps Secret values encrypted in the store.
    pub(super) objects: crate::secrets::Objects,
    pub(super) secret_box: crate::secrets::SecretBox,
}

impl Controller {
    /// Loads the fleet from the store and every device credential (and the hub's own)
    /// into the shared map the broker checks.
    pub fn new(
        store: Store,
        key: SigningKey,
        hub_credential: String,
        settings: Settings,
        outbox: UnboundedSender<Out>,
    ) -> Result<Controller, ControllerError> {
        let mut creds = HashMap::new();
        creds.insert(
            HUB_CLIENT_ID.to_owned(),
            crate::broker::hub_keys(&hub_credential),
        );
        let mut c = Controller {
            snapshot: FleetSnapshot {
                offline_after_ms: settings.offline_after_ms,
                ..FleetSnapshot::default()
            },
            store,
            payloads: BTreeMap::new(),
            key,
            creds: Arc::new(std::sync::RwLock::new(creds)),
            clients: ClientCredentials::default(),
            settings,
            outbox,
            warnings: SharedWarnings::default(),
            metrics: Arc::new(Metrics::default()),
            registry: None,
            warn_limit: RateLimit::new(WARN_EVERY_MS),
            republish_limit: RateLimit::new(super::retained::REPUBLISH_EVERY_MS),
            floors: HashMap::new(),
            reconnected_ms: None,
            mirrors: crate::telemetry::Mirrors::disabled(),
            events: crate::events::Events::default(),
            objects: Default::default(),
            secret_box: crate::secrets::SecretBox::ephemeral(),
        };
        c.load()?;
        Ok(c)
    }

    /// The registry `hub:` image references are resolved against at apply.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Controller {
        self.registry = Some(registry);
        self
    }

    /// Where accepted statuses are mirrored as JSON and changes are announced.
    pub fn with_outputs(
        mut self,
        mirrors: crate::telemetry::Mirrors,
        events: crate::events::Events,
    ) -> Controller {
        self.mirrors = mirrors;
        self.events = events;
        self
    }

    fn load(&mut self) -> Result<(), ControllerError> {
        self.floors = self.store.seq_floors()?;
        // Enrolled devices' keys are stored (the hub never saw their credential); revoked
        // devices stay out of the fleet and the logins.
        let mut enrolled = self.store.device_keys()?;
        let revoked = self.store.revoked_devices()?;
        let mut creds = self.creds.write().unwrap_or_else(|e| e.into_inner());
        for d in self.store.devices()? {
            let Ok(name) = Name::new(d.name.clone()) else {
                continue; // Names are checked on insert; a bad row cannot be addressed anyway.
            };
            if revoked.contains_key(&d.name) {
                continue;
            }
            let keys = enrolled
                .remove(&d.name)
                .unwrap_or_else(|| DeviceKeys::from_credential(d.credential.as_bytes()));
            creds.insert(d.name, keys);
            let entry = DeviceEntry {
                labels: Arc::new(d.labels),
                ..DeviceEntry::default()
            };
            self.snapshot.devices.insert(name, entry);
        }
        drop(creds);
        let mut clients = self.clients.write().unwrap_or_else(|e| e.into_inner());
        for c in self.store.clients()? {
            clients.insert(c.name, c.credential);
        }
        drop(clients);
        for (device, row) in self.store.statuses()? {
            let Some(entry) = Name::new(device)
                .ok()
                .and_then(|n| self.snapshot.devices.get_mut(&n))
            else {
                continue;
            };
            entry.last_seen_ms = row.last_seen_ms;
            entry.presence = row.presence;
            if let Some(st) = row.status {
                entry.capacity = st.capacity;
                entry.observed_generation = st.observed_generation;
                let reported = progress::reported_of(&st, &BTreeMap::new(), row.last_seen_ms);
                entry.reported = Arc::new(reported);
            }
        }
        for row in self.store.deployments()? {
            let d = row.deployment;
            self.snapshot.deployments.insert(d.name.clone(), d);
        }
        for (dep, devices) in self.store.placement()? {
            let Ok(dep) = Name::new(dep) else { continue };
            let devices = devices
                .into_iter()
                .filter_map(|d| Name::new(d).ok())
                .collect();
            self.snapshot.placement.insert(dep, devices);
        }
        for (device, row) in self.store.all_desired()? {
            let Ok(name) = Name::new(device) else {
                continue;
            };
            if !self.snapshot.devices.contains_key(&name) {
                continue; // revoked
            }
            // Rows written by an older hub are an older envelope version.
            let mut state: DesiredState = decode_any(&row.workloads)?;
            state.generation = row.generation;
            // A payload stored before sealing existed is republished sealed.
            let payload = reseal_stored(&self.key, &self.creds, &name, &state, &row.payload)?
                .unwrap_or(row.payload);
            let entry = DesiredEntry {
                generation: row.generation,
                workloads: state.workloads.into_iter().map(Arc::new).collect(),
            };
            self.snapshot.desired.insert(name.clone(), entry);
            self.payloads.insert(name, payload);
        }
        self.load_revisions()
    }

    /// The name → derived keys map the embedded broker and the registry authenticate against.
    pub fn credentials(&self) -> Credentials {
        self.creds.clone()
    }

    /// The dashboard clients' logins, for the embedded broker only.
    pub fn client_credentials(&self) -> ClientCredentials {
        self.clients.clone()
    }

    pub fn public_key(&self) -> String {
        keys::public_key_base64(&self.key.verifying_key())
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn warnings(&self) -> SharedWarnings {
        self.warnings.clone()
    }

    pub fn device_count(&self) -> usize {
        self.snapshot.devices.len()
    }

    /// Runs one command from the channel and sends its reply.
    pub fn handle(&mut self, cmd: Command) {
        let now = crate::now_ms();
        match cmd {
            Command::Apply {
                files,
                dry_run,
                reply,
            } => drop(reply.send(self.apply(&files, dry_run, now))),
            Command::Delete {
                files,
                dry_run,
                reply,
            } => drop(reply.send(self.delete(&files, dry_run, now))),
            Command::AddDevice {
                name,
                labels,
                reply,
            } => drop(reply.send(self.add_device(&name, labels, now))),
            Command::ImportDevices { file, reply } => {
                drop(reply.send(self.import_devices(&file, now)));
            }
            Command::Message {
                topic,
                payload,
                at_ms,
            } => {
                self.ingest_batch(&[(topic, payload, at_ms)], now);
            }
            Command::Connected => {
                self.reconnected_ms = Some(now);
                self.republish_all();
            }
            Command::Rollout {
                deployment,
                action,
                reply,
            } => drop(reply.send(self.rollout_action(&deployment, action, now))),
            Command::AddClient { req, reply } => drop(reply.send(self.add_client(req, now))),
            Command::RemoveClient { name, reply } => drop(reply.send(self.remove_client(&name))),
            Command::Enroll(cmd) => self.handle_enroll(cmd, now),
        }
    }

    /// Brings every device's desired state up to date (after a start or an upgrade).
    pub fn resync(&mut self, now_ms: u64) -> Result<(), ControllerError> {
        let candidate = self.snapshot.clone();
        self.commit(candidate, now_ms, |_, _| Ok(()))?;
        Ok(())
    }

    /// Plans `candidate`, signs what changes and commits `write` (the change itself, which
    /// reads what it writes from `candidate`)
    /// together with the plan in one durable transaction. Only then does `candidate`
    /// become the snapshot and are the new states queued for publishing. On any error
    /// nothing is kept.
    pub(super) fn commit<T>(
        &mut self,
        mut candidate: FleetSnapshot,
        now_ms: u64,
        write: impl FnOnce(&Store, &FleetSnapshot) -> Result<T, ControllerError>,
    ) -> Result<(T, FleetPlan), ControllerError> {
        let t0 = std::time::Instant::now();
        let plan = plan(&candidate, now_ms);
        let t1 = std::time::Instant::now();
        let signed = sign_changes(&self.key, &self.creds, &plan.changes, &self.objects)?;
        let t2 = std::time::Instant::now();
        let before = &self.snapshot;
        let value = self.store.durably(|s| {
            let v = write(s, &candidate)?;
            persist_revisions(s, before, &candidate)?;
            write_plan(s, &plan, &signed, now_ms)?;
            Ok::<_, ControllerError>(v)
        })?;
        let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_millis() as u64;
        let timing = (ms(t0, t1), ms(t1, t2), ms(t2, std::time::Instant::now()));
        self.metrics.transactions.fetch_add(1, Ordering::Relaxed);
        candidate.placement = plan.placement.clone();
        for (device, change) in &plan.changes {
            let entry = DesiredEntry {
                generation: change.generation,
                workloads: change.workloads.clone(),
            };
            candidate.desired.insert(device.clone(), entry);
        }
        self.snapshot = candidate;
        self.events.emit(crate::events::FleetEvent::Fleet);
        *self.warnings.write().unwrap_or_else(|e| e.into_inner()) = plan
            .warnings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if !signed.is_empty() {
            let (plan_ms, sign_ms, commit_ms) = timing;
            tracing::info!(
                devices = signed.len(),
                placement_changes = plan.events.len(),
                plan_ms,
                sign_ms,
                commit_ms,
                "fleet plan committed"
            );
        }
        for s in signed {
            tracing::debug!(device = %s.device, generation = s.row.generation, "desired state changed");
            let topic = drover_protocol::topics::desired(&s.device);
            self.payloads.insert(s.device, s.row.payload.clone());
            // The receiver only goes away when the hub shuts down.
            let _ = self.outbox.send(Out::Publish(Publish {
                topic,
                payload: s.row.payload,
            }));
        }
        Ok((value, plan))
    }

    /// After the MQTT client (re)connected (and subscribed): every stored desired state.
    pub(super) fn republish_all(&self) {
        tracing::info!(devices = self.payloads.len(), "republishing desired states");
        for (device, payload) in &self.payloads {
            let _ = self.outbox.send(Out::Publish(Publish {
                topic: drover_protocol::topics::desired(device),
                payload: payload.clone(),
            }));
        }
    }
}

/// The plan's rows: placement changes, desired states and their events.
fn write_plan(
    s: &Store,
    plan: &FleetPlan,
    signed: &[Signed],
    now_ms: u64,
) -> Result<(), ControllerError> {
    for e in &plan.events {
        let (dep, dev, reason, word) = match e {
            PlanEvent::Placed { deployment, device } => {
                (deployment, device, EventReason::Placed, "placed on")
            }
            PlanEvent::Unplaced { deployment, device } => {
                (deployment, device, EventReason::Unplaced, "removed from")
            }
        };
        if reason == EventReason::Placed {
            s.place(dep.as_str(), dev.as_str())?;
        } else {
            s.unplace(dep.as_str(), dev.as_str())?;
        }
        s.add_event(&Event::deployment(
            now_ms,
            dep.as_str(),
            reason,
            format!("{word} {dev}"),
        ))?;
    }
    for x in signed {
        s.put_desired(x.device.as_str(), &x.row, now_ms)?;
        let names: Vec<&str> = plan.changes[&x.device]
            .workloads
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        let msg = format!(
            "desired generation {}: [{}]",
            x.row.generation,
            names.join(", ")
        );
        s.add_event(&Event::device(
            now_ms,
            x.device.as_str(),
            EventReason::DesiredChanged,
            msg,
        ))?;
    }
    if !signed.is_empty() {
        s.bump_counter("desired_generations", signed.len() as u64)?;
    }
    Ok(())
}
