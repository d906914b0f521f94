//! The `[hub]` section of the agent config: where the broker is, the device credential
//! and the pinned hub public key.
//!
//! Values are checked while deserializing, so that toml can point at the offending line;
//! the accessors decode them again (cheap) rather than storing decoded secrets. This module
//! must never print the credential: `Debug` redacts it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use drover_protocol::quantity::DurationMs;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize};

/// Most status snapshots the link keeps while offline (the storage is fixed-size).
pub const MAX_STATUS_QUEUE: u32 = 64;

/// Why a `[hub]` section is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubConfigError {
    #[error("hub.broker: expected host:port like 127.0.0.1:1883, got {0:?}")]
    Broker(String),
    #[error("hub.credential: must not be empty")]
    Credential,
    #[error("hub.public_key: expected the hub's ed25519 public key in base64 (44 chars): {0}")]
    PublicKey(String),
    #[error("hub.heartbeat: must be longer than 0ms")]
    Heartbeat,
    #[error("hub.status_queue: expected 1..={MAX_STATUS_QUEUE}, got {0}")]
    StatusQueue(u32),
    #[error("hub.registry: expected a URL like http://hub.local:7780, got {0:?}")]
    Registry(String),
    #[error("the hub link must be started from inside a tokio runtime")]
    NoRuntime,
}

/// How the agent reaches its hub. See `configs/agent.toml`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// `host:port` of the MQTT broker (plain TCP).
    #[serde(deserialize_with = "de_broker")]
    pub broker: String,
    /// This device's credential, from `drover-hub device add`; never sent: the MQTT and
    /// registry passwords, the status key and the sealing key are derived from it.
    #[serde(deserialize_with = "de_credential")]
    pub credential: String,
    /// The hub's ed25519 public key, standard base64; desired states must verify with it.
    #[serde(deserialize_with = "de_public_key")]
    pub public_key: String,
    /// The latest status is re-sent at least this often.
    #[serde(default = "default_heartbeat", deserialize_with = "de_heartbeat")]
    pub heartbeat: DurationMs,
    /// Status snapshots kept while offline; the oldest is dropped (and counted) beyond it.
    #[serde(default = "default_status_queue", deserialize_with = "de_status_queue")]
    pub status_queue: u32,
    /// `http://host:port` (or `https://…`) of the hub's image registry (OCI distribution
    /// API, HTTP Basic with this device's name and credential), used for `hub:REPO:TAG`
    /// images; printed by `drover-hub device add` (the hub's `api.advertise`).
    #[serde(default, deserialize_with = "de_registry")]
    pub registry: Option<String>,
}

/// 60 s: with telemetry every 10 s, a 30 s heartbeat put a device's idle uplink over
/// its 0.25 kbit/s budget (bench/agent-telemetry.sh). The hub's `offline_after` (150 s)
/// is 2.5 heartbeats.
fn default_heartbeat() -> DurationMs {
    DurationMs(60_000)
}

fn default_status_queue() -> u32 {
    16
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("broker", &self.broker)
            .field("credential", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("heartbeat", &self.heartbeat)
            .field("status_queue", &self.status_queue)
            .field("registry", &self.registry)
            .finish()
    }
}

impl HubConfig {
    /// The pinned hub key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, HubConfigError> {
        parse_public_key(&self.public_key)
    }

    /// The broker's host (brackets of an IPv6 literal removed) and port.
    pub fn broker_addr(&self) -> Result<(String, u16), HubConfigError> {
        parse_broker(&self.broker)
    }

    /// Checks every field; `spawn` calls it, so a hand-built config is checked too.
    pub fn validate(&self) -> Result<(), HubConfigError> {
        self.broker_addr()?;
        self.verifying_key()?;
        check_credential(&self.credential)?;
        check_heartbeat(self.heartbeat)?;
        check_status_queue(self.status_queue)?;
        self.registry.as_deref().map_or(Ok(()), check_registry)
    }
}

fn parse_public_key(s: &str) -> Result<VerifyingKey, HubConfigError> {
    let bytes = STANDARD
        .decode(s.trim())
        .map_err(|e| HubConfigError::PublicKey(e.to_string()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| HubConfigError::PublicKey(format!("{} bytes, not 32", b.len())))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| HubConfigError::PublicKey("not a valid ed25519 point".into()))
}

fn parse_broker(s: &str) -> Result<(String, u16), HubConfigError> {
    let bad = || HubConfigError::Broker(s.to_owned());
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() || port == 0 || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn check_credential(s: &str) -> Result<(), HubConfigError> {
    if s.is_empty() {
        return Err(HubConfigError::Credential);
    }
    Ok(())
}

fn check_heartbeat(d: DurationMs) -> Result<(), HubConfigError> {
    if d.0 == 0 {
        return Err(HubConfigError::Heartbeat);
    }
    Ok(())
}

fn check_status_queue(n: u32) -> Result<(), HubConfigError> {
    if n == 0 || n > MAX_STATUS_QUEUE {
        return Err(HubConfigError::StatusQueue(n));
    }
    Ok(())
}

fn check_registry(s: &str) -> Result<(), HubConfigError> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| HubConfigError::Registry(s.to_owned()))?;
    if rest.is_empty() || rest.starts_with('/') || rest.chars().any(char::is_whitespace) {
        return Err(HubConfigError::Registry(s.to_owned()));
    }
    Ok(())
}

fn de_registry<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_registry(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

fn de_broker<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    parse_broker(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn de_credential<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_credential(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn de_public_key<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    parse_public_key(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn de_heartbeat<'de, D: Deserializer<'de>>(d: D) -> Result<DurationMs, D::Error> {
    let v = DurationMs::deserialize(d)?;
    check_heartbeat(v).map_err(serde::de::Error::custom)?;
    Ok(v)
}

fn de_status_queue<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    check_status_queue(v).map_err(serde::de::Error::custom)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        STANDARD.encode(sk.verifying_key().to_bytes())
    }

    fn parse(extra: &str) -> Result<HubConfig, toml::de::Error> {
        let key = key();
        toml::from_str(&format!(
            "broker = \"127.0.0.1:1883\"\ncredential = \"c\"\npublic_key = \"{key}\"\n{extra}"
        ))
    }

    #[test]
    fn defaults_apply_and_the_key_decodes() {
        let c = parse("").unwrap();
        assert_eq!(c.heartbeat, DurationMs(60_000));
        assert_eq!(c.status_queue, 16);
        assert_eq!(c.broker_addr().unwrap(), ("127.0.0.1".into(), 1883));
        assert_eq!(c.verifying_key().unwrap().to_bytes().len(), 32);
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("credential: \"c\""));
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let e = parse("colour = 1").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("status_queue = 0").unwrap_err().to_string();
        assert!(e.contains("hub.status_queue"), "{e}");
        let e = parse("status_queue = 65").unwrap_err().to_string();
        assert!(e.contains("1..=64"), "{e}");
        let e = parse("heartbeat = \"0s\"").unwrap_err().to_string();
        assert!(e.contains("hub.heartbeat"), "{e}");
        let e = toml::from_str::<HubConfig>(
            "broker = \"x:1\"\ncredential = \"c\"\npublic_key = \"abc\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hub.public_key"), "{e}");
        let e = toml::from_str::<HubConfig>("broker = \"x\"\ncredential = \"c\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hub.broker"), "{e}");
        let e = parse("registry = \"hub.local:7780\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hub.registry"), "{e}");
        let c = parse("registry = \"http://hub.local:7780\"").unwrap();
        assert_eq!(c.registry.as_deref(), Some("http://hub.local:7780"));
        assert_eq!(parse("").unwrap().registry, None);
    }

    #[test]
    fn key_decoding_errors_say_why() {
        assert!(matches!(
            parse_public_key("!!"),
            Err(HubConfigError::PublicKey(_))
        ));
        let short = STANDARD.encode([1u8; 31]);
        let e = parse_public_key(&short).unwrap_err().to_string();
        assert!(e.contains("31 bytes"), "{e}");
    }

    #[test]
    fn broker_addresses_parse_host_and_port() {
        assert_eq!(
            parse_broker("hub.local:1883").unwrap(),
            ("hub.local".into(), 1883)
        );
        assert_eq!(parse_broker("[::1]:1883").unwrap(), ("::1".into(), 1883));
        for bad in [
            "",
            "hub",
            ":1883",
            "hub:",
            "hub:0",
            "hub:70000",
            "::1:1883",
            "[::1:1883",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }
}
