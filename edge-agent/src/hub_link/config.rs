//! The `[hub]` section of the agent config: where the broker is, the device credential
//! and the pinned hub public key.
//!
//! Values are checked while deserializing, so that toml can point at the offending line;
//! the accessors decode them again (cheap) rather than storing decoded secrets. This module
//! must never print the credential: `Debug` redacts it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use drover_protocol::keys::{SealSecret, StatusKey};
use drover_protocol::keys_agree::{HubAgreePublic, device_status_key};
use drover_protocol::quantity::DurationMs;
use ed25519_dalek::VerifyingKey;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer, Serialize};

/// Most status snapshots the link keeps while offline (the storage is fixed-size).
pub const MAX_STATUS_QUEUE: u32 = 64;

/// Why a `[hub]` section is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubConfigError {
    #[error(
        "hub.broker: expected mqtts://host:port (TLS), or host:port / mqtt://host:port \
         (plain TCP), got {0:?}"
    )]
    Broker(String),
    #[error("hub.broker: {0:?} is mqtts:// but neither hub.ca nor hub.ca_file gives the fleet CA")]
    NoCa(String),
    #[error("hub.ca / hub.ca_file: expected the fleet CA as PEM: {0}")]
    Ca(String),
    #[error("hub.credential: must not be empty")]
    Credential,
    #[error("hub.public_key: expected the hub's ed25519 public key in base64 (44 chars): {0}")]
    PublicKey(String),
    #[error("hub.key_agreement: expected the hub's X25519 public key as 64 hex characters: {0}")]
    KeyAgreement(String),
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
    /// `mqtts://host:port` (TLS, only the fleet CA trusted) or `host:port` /
    /// `mqtt://host:port` (plain TCP: for loopback and tests).
    #[serde(deserialize_with = "de_broker")]
    pub broker: String,
    /// The fleet CA (PEM) pinned for `mqtts://` and an `https://` registry; printed by
    /// `drover-hub device add`. Alternative: `ca_file`.
    #[serde(default, deserialize_with = "de_ca")]
    pub ca: Option<String>,
    /// A file holding the fleet CA (PEM), read at start.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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
    /// The hub's X25519 key-agreement public key (64 hex), written by `drover-agent join`:
    /// the status key is then agreed with the hub (`drover_protocol::keys_agree`) instead
    /// of derived from the credential. Absent for devices added with `device add`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_key_agreement"
    )]
    pub key_agreement: Option<String>,
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
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .field("ca_file", &self.ca_file)
            .field("credential", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("heartbeat", &self.heartbeat)
            .field("status_queue", &self.status_queue)
            .field("registry", &self.registry)
            .field("key_agreement", &self.key_agreement)
            .finish()
    }
}

impl HubConfig {
    /// The pinned hub key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, HubConfigError> {
        parse_public_key(&self.public_key)
    }

    /// The key statuses, presence, telemetry and command responses are authenticated
    /// with: agreed with the hub for an enrolled device (`key_agreement`), else derived
    /// from the credential.
    pub fn status_key(&self) -> Result<StatusKey, HubConfigError> {
        let Some(hex) = &self.key_agreement else {
            return Ok(StatusKey::derive(self.credential.as_bytes()));
        };
        let hub = parse_key_agreement(hex)?;
        let seal = SealSecret::derive(self.credential.as_bytes());
        device_status_key(&seal, &hub).map_err(|e| HubConfigError::KeyAgreement(e.to_string()))
    }

    /// The broker's host (brackets of an IPv6 literal removed) and port.
    pub fn broker_addr(&self) -> Result<(String, u16), HubConfigError> {
        parse_broker(&self.broker)
    }

    /// The broker is reached over TLS (`mqtts://`).
    pub fn broker_tls(&self) -> bool {
        self.broker.starts_with("mqtts://")
    }

    /// The fleet CA's PEM text: `ca`, or the contents of `ca_file`; None when neither.
    pub fn ca_pem(&self) -> Result<Option<String>, HubConfigError> {
        if let Some(pem) = &self.ca {
            return Ok(Some(pem.clone()));
        }
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| HubConfigError::Ca(format!("{}: {e}", path.display())))?;
        parse_ca(&pem)?;
        Ok(Some(pem))
    }

    /// The TLS client config for `mqtts://`: only the fleet CA as root, `ring`.
    /// None for a plain broker address.
    pub fn mqtt_tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, HubConfigError> {
        if !self.broker_tls() {
            return Ok(None);
        }
        let pem = self
            .ca_pem()?
            .ok_or_else(|| HubConfigError::NoCa(self.broker.clone()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in parse_ca(&pem)? {
            roots
                .add(c)
                .map_err(|e| HubConfigError::Ca(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HubConfigError::Ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(Arc::new(config)))
    }

    /// Checks every field; `spawn` calls it, so a hand-built config is checked too.
    pub fn validate(&self) -> Result<(), HubConfigError> {
        self.broker_addr()?;
        if self.broker_tls() && self.ca.is_none() && self.ca_file.is_none() {
            return Err(HubConfigError::NoCa(self.broker.clone()));
        }
        self.ca_pem()?;
        self.verifying_key()?;
        check_credential(&self.credential)?;
        self.status_key()?;
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

/// The certificates of a PEM text (at least one).
pub fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, HubConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HubConfigError::Ca(e.to_string()))?;
    if certs.is_empty() {
        return Err(HubConfigError::Ca("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn de_ca<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    parse_ca(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

fn parse_broker(s: &str) -> Result<(String, u16), HubConfigError> {
    let bad = || HubConfigError::Broker(s.to_owned());
    let rest = s
        .strip_prefix("mqtts://")
        .or_else(|| s.strip_prefix("mqtt://"))
        .unwrap_or(s);
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
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

fn parse_key_agreement(s: &str) -> Result<HubAgreePublic, HubConfigError> {
    drover_protocol::keys::parse_hex32(s)
        .map(HubAgreePublic)
        .ok_or_else(|| HubConfigError::KeyAgreement(format!("{} characters", s.len())))
}

fn de_key_agreement<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    parse_key_agreement(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
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

    const TEST_CA: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBVzCB/qADAgECAhQ=\n-----END CERTIFICATE-----\n";

    #[test]
    fn mqtts_needs_the_fleet_ca_and_plain_does_not() {
        let c = toml::from_str::<HubConfig>(&format!(
            "broker = \"mqtts://hub.lan:8883\"\ncredential = \"c\"\npublic_key = \"{}\"",
            key()
        ))
        .unwrap();
        assert!(c.broker_tls());
        assert_eq!(c.broker_addr().unwrap(), ("hub.lan".into(), 8883));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("neither hub.ca nor hub.ca_file"), "{e}");
        assert!(matches!(c.mqtt_tls(), Err(HubConfigError::NoCa(_))));
        let plain = parse("").unwrap();
        assert!(!plain.broker_tls());
        assert!(plain.mqtt_tls().unwrap().is_none());
        let e = parse("ca = \"not a pem\"").unwrap_err().to_string();
        assert!(e.contains("hub.ca"), "{e}");
        let c = parse(&format!("ca = '''\n{TEST_CA}'''")).unwrap();
        assert_eq!(c.ca_pem().unwrap().as_deref(), Some(TEST_CA));
        let e = parse("ca_file = \"/nonexistent/ca.pem\"")
            .unwrap()
            .ca_pem()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn broker_addresses_parse_host_and_port() {
        assert_eq!(
            parse_broker("mqtt://hub.local:1883").unwrap(),
            ("hub.local".into(), 1883)
        );
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
            "mqtts://",
            "mqtts://hub",
            "http://hub:1",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }
}
