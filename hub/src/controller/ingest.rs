//! Messages from devices: status snapshots (authenticated with the credential of the
//! device named in the topic) and presence (`online` / `offline`, the agent's last will).
//!
//! Anything that fails a check is dropped and counted by reason; warnings about one device
//! are logged at most once a minute. A device can never make the hub do more than one
//! store write per message.

use drover_protocol::auth::{AuthError, open_status};
use drover_protocol::{DeviceStatus, Name, topics};

use super::{Controller, ControllerError, reconcile};

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
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::BadMac => "bad_mac",
            RejectReason::WrongDevice => "wrong_device",
            RejectReason::Malformed => "malformed",
        }
    }

    pub const ALL: [RejectReason; 4] = [
        RejectReason::UnknownDevice,
        RejectReason::BadMac,
        RejectReason::WrongDevice,
        RejectReason::Malformed,
    ];
}

impl Controller {
    /// Handles one incoming MQTT message. Only store failures are errors; bad messages
    /// are counted and dropped.
    pub fn ingest(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), ControllerError> {
        let Some((device, leaf)) = split_topic(topic) else {
            return Ok(()); // Not ours (e.g. a desired topic echoed by a `#` subscription).
        };
        match leaf {
            "status" => self.ingest_status(device, payload, now_ms),
            "online" => self.ingest_presence(device, payload, now_ms),
            _ => Ok(()),
        }
    }

    fn ingest_status(
        &mut self,
        device: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), ControllerError> {
        let credential = self.credential_of(device);
        let (Some(name), Some(credential)) = (Name::new(device).ok(), credential) else {
            return self.reject("status", device, RejectReason::UnknownDevice, "", now_ms);
        };
        let status = match open_status(payload, &name, credential.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                let reason = match e {
                    AuthError::BadMac => RejectReason::BadMac,
                    AuthError::WrongDevice { .. } => RejectReason::WrongDevice,
                    _ => RejectReason::Malformed,
                };
                return self.reject("status", device, reason, &e.to_string(), now_ms);
            }
        };
        self.accept_status(&status, now_ms)
    }

    fn accept_status(&mut self, status: &DeviceStatus, now_ms: u64) -> Result<(), ControllerError> {
        let device = status.device.as_str();
        let before = self.store.status(device)?;
        let was_online = reconcile::is_online(before.as_ref(), &self.settings, now_ms);
        let old_capacity = before
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .map(|s| s.capacity);
        self.store.put_status(status, now_ms)?;
        self.store.bump_counter("status_accepted", 1)?;
        if !was_online {
            self.store
                .add_event(now_ms, "device", device, "reporting status")?;
        }
        tracing::debug!(
            device,
            observed_generation = status.observed_generation,
            "status"
        );
        // Placement uses total memory and CPU; re-place only when those change, not on
        // every status (reserved memory changes as workloads start).
        let cap = status.capacity;
        let changed = old_capacity
            .is_none_or(|o| o.memory_bytes != cap.memory_bytes || o.cpu_millis != cap.cpu_millis);
        if changed
            && reconcile::load_deployments(&self.store)?
                .iter()
                .any(|d| d.replicas.is_some())
        {
            self.resync(now_ms)?;
        }
        Ok(())
    }

    fn ingest_presence(
        &mut self,
        device: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), ControllerError> {
        if self.credential_of(device).is_none() {
            return self.reject("presence", device, RejectReason::UnknownDevice, "", now_ms);
        }
        let online = match payload {
            b"online" => true,
            b"offline" => false,
            _ => {
                let msg = "expected `online` or `offline`";
                return self.reject("presence", device, RejectReason::Malformed, msg, now_ms);
            }
        };
        let before = self.store.status(device)?.and_then(|r| r.presence);
        self.store.set_presence(device, online)?;
        if before != Some(online) {
            let word = if online { "online" } else { "offline" };
            self.store.add_event(now_ms, "device", device, word)?;
            tracing::info!(device, "device is {word}");
        }
        Ok(())
    }

    fn credential_of(&self, device: &str) -> Option<String> {
        if device.starts_with(crate::fleet::RESERVED_DEVICE_PREFIX) {
            return None;
        }
        self.creds.read().ok()?.get(device).cloned()
    }

    fn reject(
        &mut self,
        what: &str,
        device: &str,
        reason: RejectReason,
        detail: &str,
        now_ms: u64,
    ) -> Result<(), ControllerError> {
        self.store
            .bump_counter(&format!("{what}_rejected_{}", reason.as_str()), 1)?;
        if !self.warn_limit.allow(device, now_ms) {
            return Ok(());
        }
        let device_log: String = device.chars().take(64).collect();
        tracing::warn!(device = %device_log, reason = reason.as_str(), "rejected {what}: {detail} (further ones for a minute are only counted)");
        if reason != RejectReason::UnknownDevice {
            let msg = format!("rejected {what} ({}): {detail}", reason.as_str());
            self.store.add_event(now_ms, "device", device, &msg)?;
        }
        Ok(())
    }
}

/// `drover/v1/dev/{device}/{leaf}` → `(device, leaf)`.
fn split_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(topics::ROOT)?.strip_prefix("/dev/")?;
    let (device, leaf) = rest.split_once('/')?;
    (!leaf.contains('/')).then_some((device, leaf))
}
