//! Verifying telemetry samples: the topic names a registered device, the tag matches that
//! device's status key (derived from its credential), and `seq` rises (replays and reorders are dropped). Counted by
//! reason in the cache; warnings per device at most once a minute.
//!
//! This module must never write anything but the cache and never trust a payload.

use std::collections::HashMap;

use drover_protocol::keys::StatusKey;
use drover_protocol::telemetry::open_telemetry;
use drover_protocol::{Name, Telemetry, topics};

use super::cache::TelemetryCache;
use crate::broker::Credentials;
use crate::ratelimit::RateLimit;

/// Checks samples against the registered credentials and the seq each device reached.
pub struct Verifier {
    creds: Credentials,
    cache: TelemetryCache,
    /// Highest seq per device recorded before this start (from history): the floor until
    /// the device's first sample of this run.
    seeded: HashMap<String, u64>,
    warn_limit: RateLimit,
}

impl Verifier {
    pub fn new(creds: Credentials, cache: TelemetryCache, seeded: HashMap<String, u64>) -> Self {
        Verifier {
            creds,
            cache,
            seeded,
            warn_limit: RateLimit::new(60_000),
        }
    }

    /// The device and its sample, or None when the message was dropped (and counted).
    pub fn check(&mut self, topic: &str, payload: &[u8], at_ms: u64) -> Option<(Name, Telemetry)> {
        let device = device_of(topic)?;
        let (name, key) = match (Name::new(device), self.status_key_of(device)) {
            (Ok(name), Some(c)) => (name, c),
            _ => {
                self.reject(device, "unknown_device", "not a registered device", at_ms);
                return None;
            }
        };
        let held = self
            .cache
            .held_seq(device)
            .max(self.seeded.get(device).copied().unwrap_or(0));
        match open_telemetry(payload, &name, &key, held) {
            Ok(sample) => Some((name, sample)),
            Err(e) => {
                self.reject(device, e.reason(), &e.to_string(), at_ms);
                None
            }
        }
    }

    fn status_key_of(&self, device: &str) -> Option<StatusKey> {
        if device.starts_with(crate::fleet::RESERVED_DEVICE_PREFIX) {
            return None;
        }
        let map = self.creds.read().ok()?;
        map.get(device).map(|k| k.status_key.clone())
    }

    fn reject(&mut self, device: &str, reason: &str, detail: &str, at_ms: u64) {
        self.cache.count_rejected(reason);
        if self.warn_limit.allow(device, at_ms) {
            let device_log: String = device.chars().take(64).collect();
            tracing::warn!(device = %device_log, reason,
                "rejected telemetry: {detail} (further ones for a minute are only counted)");
        }
    }
}

/// `drover/v1/dev/{device}/telemetry` → `device`.
fn device_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(topics::ROOT)?.strip_prefix("/dev/")?;
    rest.strip_suffix("/telemetry").filter(|d| !d.contains('/'))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use drover_protocol::telemetry::seal_telemetry;

    use super::*;

    fn verifier() -> (Verifier, TelemetryCache) {
        let creds: Credentials = Arc::new(RwLock::new(
            [(
                "pi-1".to_owned(),
                drover_protocol::keys::DeviceKeys::from_credential(b"secret"),
            )]
            .into(),
        ));
        let cache = TelemetryCache::default();
        let seeded = [("pi-1".to_owned(), 5)].into();
        (Verifier::new(creds, cache.clone(), seeded), cache)
    }

    fn payload(seq: u64, credential: &[u8]) -> Vec<u8> {
        let sample = Telemetry {
            seq,
            ..Default::default()
        };
        seal_telemetry(&sample, &Name::new("pi-1").unwrap(), credential).unwrap()
    }

    #[test]
    fn forged_replayed_and_unknown_samples_are_dropped_and_counted() {
        let (mut v, cache) = verifier();
        let topic = "drover/v1/dev/pi-1/telemetry";
        // At or below the seq seeded from history: a replay of something already stored.
        assert!(v.check(topic, &payload(5, b"secret"), 1).is_none());
        let (_, s) = v.check(topic, &payload(6, b"secret"), 1).unwrap();
        cache.accept("pi-1", s, 1);
        assert!(v.check(topic, &payload(6, b"secret"), 2).is_none());
        assert!(v.check(topic, &payload(7, b"forged"), 2).is_none());
        assert!(
            v.check("drover/v1/dev/pi-9/telemetry", &payload(8, b"secret"), 2)
                .is_none()
        );
        assert!(
            v.check(topic, b"garbage that is long enough to hold a tag", 2)
                .is_none()
        );
        assert!(v.check(topic, &payload(7, b"secret"), 3).is_some());
        let c = cache.counters();
        assert_eq!(c.accepted, 1);
        assert_eq!(c.rejected.get("replayed"), Some(&2));
        assert_eq!(c.rejected.get("bad_mac"), Some(&2));
        assert_eq!(c.rejected.get("unknown_device"), Some(&1));
    }

    #[test]
    fn only_telemetry_topics_name_a_device() {
        assert_eq!(device_of("drover/v1/dev/pi-1/telemetry"), Some("pi-1"));
        assert_eq!(device_of("drover/v1/dev/pi-1/telemetry/json"), None);
        assert_eq!(device_of("drover/v1/dev/a/b/telemetry"), None);
        assert_eq!(device_of("drover/v1/dev/pi-1/status"), None);
    }
}
