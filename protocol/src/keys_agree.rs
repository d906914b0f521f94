//! The status key of a device enrolled with a join token (`drover-agent join`): an
//! X25519 agreement between the device's sealing secret and the hub's static key-agreement
//! key (`D/hub.kx`), expanded with HKDF-SHA256. Both sides compute it; it never crosses
//! the network (the device sends its sealing public key, the hub its key-agreement public
//! key, and neither is enough to compute it).
//!
//! Devices registered with `device add` keep the credential-derived status key
//! (`keys::StatusKey::derive`). The info string is part of the protocol: never change it.
//! Pure: no IO, no randomness.

use hkdf::Hkdf;
use hpke::Serializable;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::keys::{SALT, SealPublicKey, SealSecret, StatusKey};

/// HKDF info of the status key agreed between an enrolled device and its hub.
pub const INFO_STATUS_KEY_X25519: &[u8] = b"drover/v1/status-key-x25519";

/// Why no key could be agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreeError {
    /// A low-order public key: the shared secret would be all zeros, known to anyone.
    #[error("the peer's X25519 public key is of low order (no shared secret)")]
    LowOrder,
}

/// The hub's static X25519 key-agreement public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HubAgreePublic(pub [u8; 32]);

/// Device side: the status key agreed with the hub whose key-agreement public key is
/// `hub`.
pub fn device_status_key(seal: &SealSecret, hub: &HubAgreePublic) -> Result<StatusKey, AgreeError> {
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&seal.0.to_bytes());
    let device_pub = seal.public();
    agree(&secret, &hub.0, &device_pub.0, &hub.0)
}

/// Hub side: the status key agreed with the device whose sealing public key is `device`,
/// from the hub's key-agreement secret `hub_secret`.
pub fn hub_status_key(
    hub_secret: &[u8; 32],
    device: &SealPublicKey,
) -> Result<StatusKey, AgreeError> {
    let hub_pub = hub_public(hub_secret);
    agree(hub_secret, &device.0, &device.0, &hub_pub.0)
}

/// The public half of the hub's key-agreement secret.
pub fn hub_public(hub_secret: &[u8; 32]) -> HubAgreePublic {
    HubAgreePublic(PublicKey::from(&StaticSecret::from(*hub_secret)).to_bytes())
}

/// X25519(mine, theirs), then HKDF over the shared secret and both public keys (device
/// first), so that a key is bound to the pair it was agreed for.
fn agree(
    mine: &[u8; 32],
    theirs: &[u8; 32],
    device_pub: &[u8; 32],
    hub_pub: &[u8; 32],
) -> Result<StatusKey, AgreeError> {
    let shared = StaticSecret::from(*mine).diffie_hellman(&PublicKey::from(*theirs));
    if !shared.was_contributory() {
        return Err(AgreeError::LowOrder);
    }
    let mut ikm = [0u8; 96];
    ikm[..32].copy_from_slice(shared.as_bytes());
    ikm[32..64].copy_from_slice(device_pub);
    ikm[64..].copy_from_slice(hub_pub);
    let hk = Hkdf::<Sha256>::new(Some(SALT), &ikm);
    let mut out = [0u8; 32];
    hk.expand(INFO_STATUS_KEY_X25519, &mut out)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF length"));
    Ok(StatusKey::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceSecrets;

    #[test]
    fn device_and_hub_agree_on_the_same_status_key() {
        let hub_secret = [7u8; 32];
        let device = DeviceSecrets::derive(b"device-made-credential");
        let on_device = device_status_key(&device.seal, &hub_public(&hub_secret)).unwrap();
        // The hub sees only the device's sealing public key.
        let on_hub = hub_status_key(&hub_secret, &device.seal.public()).unwrap();
        assert_eq!(on_device, on_hub);
        // Not the credential-derived key, not another device's, not another hub's.
        assert_ne!(on_device, device.status_key);
        let other = DeviceSecrets::derive(b"other-credential");
        assert_ne!(
            hub_status_key(&hub_secret, &other.seal.public()).unwrap(),
            on_hub
        );
        let other_hub = device_status_key(&device.seal, &hub_public(&[8u8; 32])).unwrap();
        assert_ne!(other_hub, on_device);
    }

    #[test]
    fn the_key_is_none_of_what_crosses_the_network() {
        let hub_secret = [9u8; 32];
        let device = DeviceSecrets::derive(b"c");
        let key = hub_status_key(&hub_secret, &device.seal.public()).unwrap();
        let sent = [
            device.mqtt_password.as_bytes().to_vec(),
            device.registry_password.as_bytes().to_vec(),
            device.seal.public().0.to_vec(),
            hub_public(&hub_secret).0.to_vec(),
        ];
        for s in &sent {
            assert!(
                !s.windows(32).any(|w| w == key.as_bytes()),
                "the status key must not be in anything sent"
            );
        }
    }

    #[test]
    fn a_low_order_point_is_refused() {
        let device = DeviceSecrets::derive(b"c");
        let zero = HubAgreePublic([0u8; 32]);
        assert_eq!(
            device_status_key(&device.seal, &zero),
            Err(AgreeError::LowOrder)
        );
        assert_eq!(
            hub_status_key(&[1u8; 32], &SealPublicKey([0u8; 32])),
            Err(AgreeError::LowOrder)
        );
    }
}
