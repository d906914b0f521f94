//! One key per purpose, derived from a device's credential (HKDF-SHA256, RFC 5869).
//!
//! The credential itself never crosses the network. From it come, independently:
//! - the MQTT password and the registry password (sent, each only to its own server);
//! - the status key: HMAC key of statuses, telemetry and command responses (never sent);
//! - the device's X25519 secret, to which the hub seals its desired state (never sent;
//!   the hub keeps only the public key).
//!
//! The hub needs only [`DeviceKeys`] (two password checks, the status key, the sealing
//! public key), so a device enrolled without the hub ever seeing its credential fits the
//! same shape. The info strings are part of the protocol: never change one.
//! Pure: no IO, no randomness.

use hkdf::Hkdf;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, Serializable};
use sha2::Sha256;

/// HKDF salt: fixed, so the same credential always gives the same keys.
pub const SALT: &[u8] = b"drover/v1/device-keys";
/// HKDF info of the MQTT password.
pub const INFO_MQTT_PASSWORD: &[u8] = b"drover/v1/mqtt-password";
/// HKDF info of the registry (HTTP Basic) password.
pub const INFO_REGISTRY_PASSWORD: &[u8] = b"drover/v1/registry-password";
/// HKDF info of the status/telemetry/command-response HMAC key.
pub const INFO_STATUS_KEY: &[u8] = b"drover/v1/status-key";
/// HKDF info of the X25519 secret desired states are sealed to.
pub const INFO_SEAL_X25519: &[u8] = b"drover/v1/seal-x25519";

/// The KEM of sealed desired states (HPKE, RFC 9180): DHKEM(X25519, HKDF-SHA256).
pub type SealKem = X25519HkdfSha256;

/// 32 derived bytes for one purpose.
fn expand(credential: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(SALT), credential);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: this cannot fail.
    hk.expand(info, &mut out)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF length"));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HMAC key of everything a device sends (statuses, telemetry, command responses).
#[derive(Clone, PartialEq, Eq)]
pub struct StatusKey([u8; 32]);

impl StatusKey {
    /// The status key of the device holding `credential`.
    pub fn derive(credential: &[u8]) -> StatusKey {
        StatusKey(expand(credential, INFO_STATUS_KEY))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key computed elsewhere (`keys_agree`) or stored by the hub.
    pub fn from_bytes(bytes: [u8; 32]) -> StatusKey {
        StatusKey(bytes)
    }
}

impl std::fmt::Debug for StatusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusKey(…)")
    }
}

/// A device's X25519 secret: opens the desired states sealed to it. Never leaves the device.
#[derive(Clone)]
pub struct SealSecret(pub(crate) <SealKem as hpke::Kem>::PrivateKey);

impl SealSecret {
    /// The sealing secret of the device holding `credential`.
    pub fn derive(credential: &[u8]) -> SealSecret {
        let bytes = expand(credential, INFO_SEAL_X25519);
        // Any 32 bytes are an X25519 secret (clamped when used): this cannot fail.
        let sk = <SealKem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .unwrap_or_else(|_| unreachable!("any 32 bytes are an X25519 secret"));
        SealSecret(sk)
    }

    pub fn public(&self) -> SealPublicKey {
        let pk = SealKem::sk_to_pk(&self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(&pk.to_bytes());
        SealPublicKey(out)
    }
}

impl std::fmt::Debug for SealSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealSecret(…)")
    }
}

/// A device's X25519 public key: what the hub seals that device's desired state to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealPublicKey(pub [u8; 32]);

impl SealPublicKey {
    pub(crate) fn to_hpke(self) -> Result<<SealKem as hpke::Kem>::PublicKey, hpke::HpkeError> {
        <SealKem as hpke::Kem>::PublicKey::from_bytes(&self.0)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The 64 hex characters of [`SealPublicKey::to_hex`]; None for anything else.
    pub fn from_hex(s: &str) -> Option<SealPublicKey> {
        parse_hex32(s).map(SealPublicKey)
    }
}

/// 64 hex characters (either case) as 32 bytes; None for anything else.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl std::fmt::Debug for SealPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealPublicKey({})", self.to_hex())
    }
}

/// Everything a device derives from its credential (device side).
#[derive(Clone, Debug)]
pub struct DeviceSecrets {
    pub mqtt_password: String,
    pub registry_password: String,
    pub status_key: StatusKey,
    pub seal: SealSecret,
}

impl DeviceSecrets {
    pub fn derive(credential: &[u8]) -> DeviceSecrets {
        DeviceSecrets {
            mqtt_password: mqtt_password(credential),
            registry_password: registry_password(credential),
            status_key: StatusKey::derive(credential),
            seal: SealSecret::derive(credential),
        }
    }

    /// What the hub keeps of these: no secret that stays on the device.
    pub fn hub_view(&self) -> DeviceKeys {
        DeviceKeys {
            mqtt_password: self.mqtt_password.clone(),
            registry_password: self.registry_password.clone(),
            status_key: self.status_key.clone(),
            seal_public: self.seal.public(),
        }
    }
}

/// What the hub needs of one device: check its two passwords, check what it sends, seal
/// what it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKeys {
    pub mqtt_password: String,
    pub registry_password: String,
    pub status_key: StatusKey,
    pub seal_public: SealPublicKey,
}

impl DeviceKeys {
    /// The keys of a device registered with `credential` (`device add`).
    pub fn from_credential(credential: &[u8]) -> DeviceKeys {
        DeviceSecrets::derive(credential).hub_view()
    }
}

/// The MQTT password of the device holding `credential` (64 hex characters).
pub fn mqtt_password(credential: &[u8]) -> String {
    hex(&expand(credential, INFO_MQTT_PASSWORD))
}

/// The registry (HTTP Basic) password of the device holding `credential` (64 hex characters).
pub fn registry_password(credential: &[u8]) -> String {
    hex(&expand(credential, INFO_REGISTRY_PASSWORD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_are_fixed_and_independent() {
        // A fixed vector: changing a salt, an info string or the encoding breaks every
        // device in the field, so it must show here first. Computed independently (Python:
        // hmac/hashlib HKDF, and the `cryptography` package's X25519 for the public key).
        let s = DeviceSecrets::derive(b"credential-of-pi-1");
        assert_eq!(
            s.mqtt_password,
            "1cb5ccae01fcb4965e3266d7f17137f0b8e11974077cce35802d8deab4966625"
        );
        assert_eq!(
            s.registry_password,
            "05bc12aee6d98d9777226b3687cf0e9914b432715bd6bd49c058ed438fe927c4"
        );
        assert_eq!(
            hex(s.status_key.as_bytes()),
            "c2de2c730e0396037f2a27f9e3e5bdfc78292abd8654d04635f9d587bac16e10"
        );
        assert_eq!(
            s.seal.public().to_hex(),
            "885b988e8a5811f6fbf4c38b8f691bdc2ff6c856adb0c08bf0e73ad6fd89887c"
        );
        let values = [
            s.mqtt_password.clone(),
            s.registry_password.clone(),
            hex(s.status_key.as_bytes()),
            s.seal.public().to_hex(),
        ];
        for (i, a) in values.iter().enumerate() {
            for b in &values[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let other = DeviceSecrets::derive(b"credential-of-pi-2");
        assert_ne!(other.mqtt_password, s.mqtt_password);
        assert_ne!(other.seal.public(), s.seal.public());
        assert_eq!(
            DeviceKeys::from_credential(b"credential-of-pi-1"),
            s.hub_view()
        );
    }
}
