//! Authenticity of what crosses the broker. The broker is not trusted (rumqttd has no
//! topic ACLs): the hub signs every desired state with its ed25519 key (and seals it to
//! the device: `sealed`), and each agent authenticates its status with an HMAC keyed by
//! its status key, derived from its credential (`keys`), which never crosses the network.
//!
//! Verification never panics and says exactly why a message was refused.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Name;
use crate::codec::{CodecError, Wire, encode};
use crate::compat::decode_any;
use crate::keys::StatusKey;
use crate::types::{DesiredState, DeviceStatus};

/// Domain separation: a signature over a desired state is never valid for anything else.
const DESIRED_CONTEXT: &[u8] = b"drover/v1/desired\0";
const STATUS_CONTEXT: &[u8] = b"drover/v1/status\0";

/// A desired state as published: its encoded bytes and the hub's signature over them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDesired {
    pub desired: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Wire for SignedDesired {
    const KIND: u8 = 3;
    const KIND_NAME: &'static str = "signed desired state";
}

/// A status as published: its encoded bytes and an HMAC-SHA256 by the device credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthedStatus {
    pub status: Vec<u8>,
    pub mac: Vec<u8>,
}

impl Wire for AuthedStatus {
    const KIND: u8 = 4;
    const KIND_NAME: &'static str = "authenticated status";
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("bad signature: not signed by the pinned hub key")]
    BadSignature,
    #[error("bad MAC: not sent by the device's credential holder")]
    BadMac,
    #[error("addressed to device `{got}`, this is `{expected}`")]
    WrongDevice { expected: String, got: String },
    #[error("generation {got} is not newer than the {held} already held (replay or reorder)")]
    Stale { got: u64, held: u64 },
    #[error("cannot open the sealed desired state: not sealed to this device's key, or damaged")]
    Unseal,
    #[error("the sealed desired state names another device or generation than its signed envelope")]
    SealMismatch,
}

/// Encodes and signs a desired state; the result is the MQTT payload.
pub fn sign_desired(desired: &DesiredState, key: &SigningKey) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(desired)?;
    let signature = key
        .sign(&[DESIRED_CONTEXT, &bytes].concat())
        .to_bytes()
        .to_vec();
    encode(&SignedDesired {
        desired: bytes,
        signature,
    })
}

/// Checks a desired-state payload: signed by `hub`, for `device`, newer than `held`.
pub fn verify_desired(
    payload: &[u8],
    hub: &VerifyingKey,
    device: &Name,
    held: u64,
) -> Result<DesiredState, AuthError> {
    // Older envelope versions are read too (a state persisted before an upgrade); the
    // signature is checked over the bytes as signed, before any conversion.
    let signed: SignedDesired = decode_any(payload)?;
    let sig = Signature::from_slice(&signed.signature).map_err(|_| AuthError::BadSignature)?;
    hub.verify(&[DESIRED_CONTEXT, &signed.desired].concat(), &sig)
        .map_err(|_| AuthError::BadSignature)?;
    let desired: DesiredState = decode_any(&signed.desired)?;
    if &desired.device != device {
        return Err(AuthError::WrongDevice {
            expected: device.to_string(),
            got: desired.device.to_string(),
        });
    }
    if desired.generation <= held {
        return Err(AuthError::Stale {
            got: desired.generation,
            held,
        });
    }
    Ok(desired)
}

fn mac(key: &StatusKey) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"))
}

/// Encodes a status and authenticates it with the status key derived from the device
/// credential.
pub fn seal_status(status: &DeviceStatus, credential: &[u8]) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(status)?;
    let mut m = mac(&StatusKey::derive(credential));
    m.update(STATUS_CONTEXT);
    m.update(&bytes);
    encode(&AuthedStatus {
        status: bytes,
        mac: m.finalize().into_bytes().to_vec(),
    })
}

/// Checks a status payload received on `device`'s topic against that device's status key.
pub fn open_status(
    payload: &[u8],
    device: &Name,
    key: &StatusKey,
) -> Result<DeviceStatus, AuthError> {
    let authed: AuthedStatus = decode_any(payload)?;
    let mut m = mac(key);
    m.update(STATUS_CONTEXT);
    m.update(&authed.status);
    m.verify_slice(&authed.mac).map_err(|_| AuthError::BadMac)?;
    let status: DeviceStatus = decode_any(&authed.status)?;
    if &status.device != device {
        return Err(AuthError::WrongDevice {
            expected: device.to_string(),
            got: status.device.to_string(),
        });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::decode;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn desired(device: &str, generation: u64) -> DesiredState {
        DesiredState {
            device: Name::new(device).unwrap(),
            generation,
            workloads: vec![],
        }
    }

    #[test]
    fn a_signed_desired_state_verifies_only_for_its_device_key_and_newer_generations() {
        let dev = Name::new("pi-1").unwrap();
        let payload = sign_desired(&desired("pi-1", 5), &key(1)).unwrap();
        assert_eq!(
            verify_desired(&payload, &key(1).verifying_key(), &dev, 4)
                .unwrap()
                .generation,
            5
        );
        assert!(matches!(
            verify_desired(&payload, &key(2).verifying_key(), &dev, 4),
            Err(AuthError::BadSignature)
        ));
        assert!(matches!(
            verify_desired(&payload, &key(1).verifying_key(), &dev, 5),
            Err(AuthError::Stale { got: 5, held: 5 })
        ));
        let other = Name::new("pi-2").unwrap();
        assert!(matches!(
            verify_desired(&payload, &key(1).verifying_key(), &other, 0),
            Err(AuthError::WrongDevice { .. })
        ));
        // Tampering with the signed bytes breaks the signature.
        let mut signed: SignedDesired = decode(&payload).unwrap();
        *signed.desired.last_mut().unwrap() ^= 1;
        let tampered = encode(&signed).unwrap();
        assert!(matches!(
            verify_desired(&tampered, &key(1).verifying_key(), &dev, 0),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn a_status_opens_only_with_its_credential_and_topic() {
        let dev = Name::new("pi-1").unwrap();
        let st = DeviceStatus {
            device: dev.clone(),
            observed_generation: 3,
            time_ms: 1,
            workloads: vec![],
            capacity: Default::default(),
        };
        let payload = seal_status(&st, b"secret").unwrap();
        let key = StatusKey::derive(b"secret");
        assert_eq!(open_status(&payload, &dev, &key).unwrap(), st);
        assert!(matches!(
            open_status(&payload, &dev, &StatusKey::derive(b"other")),
            Err(AuthError::BadMac)
        ));
        let other = Name::new("pi-2").unwrap();
        assert!(matches!(
            open_status(&payload, &other, &key),
            Err(AuthError::WrongDevice { .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_is_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let dev = Name::new("pi").unwrap();
            prop_assert!(verify_desired(&bytes, &key(1).verifying_key(), &dev, 0).is_err());
            prop_assert!(open_status(&bytes, &dev, &StatusKey::derive(b"k")).is_err());
        }
    }
}
