//! Messages from devices, folded in batches: status snapshots and presence (`online` /
//! `offline`, the agent's last will), both authenticated with the status key derived from
//! the credential of the device named in the topic and sequenced (`freshness.rs`: replays
//! are dropped), and retained desired states someone else wrote (`retained.rs`).
//!
//! A batch is verified message by message, then written in ONE transaction and folded
//! into the snapshot; per message there is no O(devices) work. A capacity change re-plans
//! only when a Deployment with `replicas` selects that device. Anything that fails a check
//! is dropped and counted by reason; warnings about one device are logged at most once a
//! minute.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use drover_protocol::auth::AuthError;
use drover_protocol::freshness::{Presence, open_presence, open_status_seq};
use drover_protocol::keys::StatusKey;
use drover_protocol::{DeviceStatus, Name, topics};

use super::freshness::SeqKind;
use super::{Controller, ControllerError};
use crate::events::FleetEvent;
use crate::fleet::progress::reported_of;
use crate::fleet::snapshot::online;
use crate::store::{Event, EventReason, SeqFloors, Store};

/// Why a message from a device was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The topic names no registered device.
    UnknownDevice,
    /// The MAC does not match the credential of the device in the topic.
    BadMac,
    /// Authenticated by the topic's device but about another device.
    WrongDevice,
    /// Not a status (or presence) message at all.
    Malformed,
    /// Authentic, but its sequence number is not above the last one accepted.
    Replayed,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::BadMac => "bad_mac",
            RejectReason::WrongDevice => "wrong_device",
            RejectReason::Malformed => "malformed",
            RejectReason::Replayed => "replayed",
        }
    }

    pub const ALL: [RejectReason; 5] = [
        RejectReason::UnknownDevice,
        RejectReason::BadMac,
        RejectReason::WrongDevice,
        RejectReason::Malformed,
        RejectReason::Replayed,
    ];
}

/// What one batch adds up to, before it is written.
#[derive(Default)]
struct Batch {
    /// Last accepted status per device, with the time it arrived.
    statuses: BTreeMap<Name, (DeviceStatus, u64)>,
    presence: BTreeMap<Name, bool>,
    /// Devices whose retained desired state someone else overwrote (`retained.rs`).
    overwritten: Vec<Name>,
    /// Sequence floors raised by this batch (`freshness.rs`).
    floors: BTreeMap<Name, SeqFloors>,
    counters: BTreeMap<String, u64>,
    events: Vec<Event>,
}

impl Controller {
    /// Folds a batch of `(topic, payload, received_ms)` device messages: one transaction.
    /// Only store failures are logged as errors; bad messages are counted and dropped.
    /// Returns whether anything a rollout judges changed — a device's reported workloads,
    /// its presence, or its coming back after silence — so that a batch of plain
    /// heartbeats does not step every rollout over every device.
    pub fn ingest_batch(&mut self, messages: &[(String, Vec<u8>, u64)], now_ms: u64) -> bool {
        let mut batch = Batch::default();
        for (topic, payload, at_ms) in messages {
            self.check_message(&mut batch, topic, payload, *at_ms);
        }
        let overwritten = std::mem::take(&mut batch.overwritten);
        let restored = self.restore_retained(&overwritten, now_ms);
        batch.events.extend(restored);
        self.metrics.message_batches.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .messages
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        match self.fold(batch, now_ms) {
            Ok(moved) => moved,
            Err(e) => {
                tracing::error!(
                    messages = messages.len(),
                    "cannot record device messages: {e}"
                );
                false
            }
        }
    }

    fn check_message(&mut self, batch: &mut Batch, topic: &str, payload: &[u8], at_ms: u64) {
        let Some((device, leaf)) = split_topic(topic) else {
            return; // Not ours (e.g. a JSON mirror such as `…/status/json`, two levels deep).
        };
        let result = match leaf {
            "status" => self.check_status(device, payload).and_then(|(s, seq)| {
                self.take_fresh(&mut batch.floors, &s.device, seq, SeqKind::Status)?;
                batch.statuses.insert(s.device.clone(), (s, at_ms));
                Ok(())
            }),
            "online" => self
                .check_presence(device, payload)
                .and_then(|(name, presence)| {
                    self.take_fresh(&mut batch.floors, &name, presence.seq, SeqKind::Presence)?;
                    batch.presence.insert(name, presence.online);
                    Ok(())
                }),
            "desired" => {
                if let Some(name) = self.retained_overwritten(device, payload) {
                    *batch
                        .counters
                        .entry(super::retained::OVERWRITTEN.to_owned())
                        .or_default() += 1;
                    batch.overwritten.push(name);
                }
                return;
            }
            _ => return,
        };
        if let Err((reason, detail)) = result {
            let what = if leaf == "status" {
                "status"
            } else {
                "presence"
            };
            self.reject(batch, what, device, reason, &detail, at_ms);
        }
    }

    fn check_status(
        &self,
        device: &str,
        payload: &[u8],
    ) -> Result<(DeviceStatus, Option<u64>), (RejectReason, String)> {
        let (Some(name), Some(key)) = (Name::new(device).ok(), self.status_key_of(device)) else {
            return Err((RejectReason::UnknownDevice, String::new()));
        };
        open_status_seq(payload, &name, &key).map_err(|e| {
            let reason = match e {
                AuthError::BadMac => RejectReason::BadMac,
                AuthError::WrongDevice { .. } => RejectReason::WrongDevice,
                _ => RejectReason::Malformed,
            };
            (reason, e.to_string())
        })
    }

    fn check_presence(
        &self,
        device: &str,
        payload: &[u8],
    ) -> Result<(Name, Presence), (RejectReason, String)> {
        let (Some(name), Some(key)) = (Name::new(device).ok(), self.status_key_of(device)) else {
            return Err((RejectReason::UnknownDevice, String::new()));
        };
        match open_presence(payload, &name, &key) {
            Ok(p) => Ok((name, p)),
            Err(AuthError::BadMac) => Err((RejectReason::BadMac, AuthError::BadMac.to_string())),
            Err(e) => Err((
                RejectReason::Malformed,
                format!("expected a sealed presence or `online` / `offline`: {e}"),
            )),
        }
    }

    /// Writes the batch in one transaction, then folds it into the snapshot and re-plans
    /// if a capacity that placement depends on changed.
    fn fold(&mut self, mut batch: Batch, now_ms: u64) -> Result<bool, ControllerError> {
        let mut replan = false;
        let mut moved = false;
        for (name, (status, at_ms)) in &batch.statuses {
            let Some(entry) = self.snapshot.devices.get(name) else {
                continue;
            };
            if !online(entry, self.snapshot.offline_after_ms, *at_ms) {
                moved = true;
                batch.events.push(Event::device(
                    *at_ms,
                    name.as_str(),
                    EventReason::ReportingStatus,
                    "reporting status",
                ));
            }
            let (old, new) = (entry.capacity, status.capacity);
            let changed = old.memory_bytes != new.memory_bytes || old.cpu_millis != new.cpu_millis;
            replan |= changed && self.snapshot.capacity_matters(name);
        }
        for (name, online) in &batch.presence {
            let before = self.snapshot.devices.get(name).and_then(|d| d.presence);
            if before != Some(*online) {
                moved = true;
                let (reason, word) = if *online {
                    (EventReason::Online, "online")
                } else {
                    (EventReason::Offline, "offline")
                };
                batch
                    .events
                    .push(Event::device(now_ms, name.as_str(), reason, word));
                tracing::info!(device = %name, "device is {word}");
            }
        }
        if !batch.statuses.is_empty() {
            *batch
                .counters
                .entry("status_accepted".to_owned())
                .or_default() += batch.statuses.len() as u64;
        }
        self.store.atomically(|s| write_batch(s, &batch))?;
        self.metrics.transactions.fetch_add(1, Ordering::Relaxed);
        for (name, (status, at_ms)) in batch.statuses {
            self.mirrors
                .offer(topics::status_json(&name), &status, true);
            if let Some(d) = self.snapshot.devices.get_mut(&name) {
                d.capacity = status.capacity;
                d.last_seen_ms = at_ms;
                d.observed_generation = status.observed_generation;
                let reported = reported_of(&status, &d.reported, at_ms);
                if *d.reported != reported {
                    d.reported = std::sync::Arc::new(reported);
                    moved = true;
                    self.events.emit(FleetEvent::Status {
                        device: name.to_string(),
                    });
                }
            }
        }
        for (name, online) in batch.presence {
            if let Some(d) = self.snapshot.devices.get_mut(&name) {
                if d.presence != Some(online) {
                    self.events.emit(FleetEvent::Presence {
                        device: name.to_string(),
                        online,
                    });
                }
                d.presence = Some(online);
            }
        }
        if replan {
            self.resync(now_ms)?;
        }
        Ok(moved)
    }

    fn status_key_of(&self, device: &str) -> Option<StatusKey> {
        if device.starts_with(crate::fleet::RESERVED_DEVICE_PREFIX) {
            return None;
        }
        let map = self.creds.read().ok()?;
        map.get(device).map(|k| k.status_key.clone())
    }

    fn reject(
        &mut self,
        batch: &mut Batch,
        what: &str,
        device: &str,
        reason: RejectReason,
        detail: &str,
        at_ms: u64,
    ) {
        *batch
            .counters
            .entry(format!("{what}_rejected_{}", reason.as_str()))
            .or_default() += 1;
        if !self.warn_limit.allow(device, at_ms) {
            return;
        }
        let device_log: String = device.chars().take(64).collect();
        tracing::warn!(device = %device_log, reason = reason.as_str(), "rejected {what}: {detail} (further ones for a minute are only counted)");
        if reason != RejectReason::UnknownDevice {
            let msg = format!("rejected {what} ({}): {detail}", reason.as_str());
            batch
                .events
                .push(Event::device(at_ms, device, EventReason::Rejected, msg));
        }
    }
}

fn write_batch(s: &Store, batch: &Batch) -> Result<(), ControllerError> {
    for (status, at_ms) in batch.statuses.values() {
        s.put_status(status, *at_ms)?;
    }
    for (name, online) in &batch.presence {
        s.set_presence(name.as_str(), *online)?;
    }
    for (name, floors) in &batch.floors {
        s.put_seq_floors(name.as_str(), *floors)?;
    }
    for (name, by) in &batch.counters {
        s.bump_counter(name, *by)?;
    }
    for e in &batch.events {
        s.add_event(e)?;
    }
    Ok(())
}

/// `drover/v1/dev/{device}/{leaf}` → `(device, leaf)`.
fn split_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(topics::ROOT)?.strip_prefix("/dev/")?;
    let (device, leaf) = rest.split_once('/')?;
    (!leaf.contains('/')).then_some((device, leaf))
}
