//! Sealed desired states: encrypted to one device's X25519 key, then signed by the hub,
//! so that neither the broker nor another device can read a desired state (env values
//! included), whatever broker carries it.
//!
//! Encryption: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305; info [`HPKE_INFO`]; AAD = postcard `(device, generation)`; the
//! plaintext is the `DesiredState` in the ordinary envelope. Signature: ed25519 by the
//! hub over [`SEALED_CONTEXT`] ‖ postcard `(device, generation, enc, ciphertext)`.
//! The reader checks the signature first, then device and generation, and only then
//! decrypts; the decrypted state must name the same device and generation.
//!
//! A [`SealedDesired`] is its own message kind (9) in the envelope, so payloads that are
//! only signed (`auth::SignedDesired`, kind 3: older hubs, an `S/hub-desired.bin` persisted
//! before an upgrade) are still read by [`open_desired`]. Never panics on any input.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use crate::Name;
use crate::auth::{AuthError, verify_desired};
use crate::codec::{CodecError, Wire, encode};
use crate::compat::decode_any;
use crate::keys::{SealKem, SealPublicKey, SealSecret};
use crate::types::DesiredState;

/// The random-generator traits [`seal_desired`] asks for (the HPKE crate's `rand_core`).
pub use hpke::rand_core;

/// Domain separation of the hub's signature over a sealed state.
pub const SEALED_CONTEXT: &[u8] = b"drover/v1/sealed-desired\0";
/// HPKE `info`: binds the key schedule to this use.
pub const HPKE_INFO: &[u8] = b"drover/v1/desired-seal";

/// A desired state as published: sealed to its device, signed by the hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedDesired {
    pub device: Name,
    pub generation: u64,
    /// HPKE encapsulated key (the sender's ephemeral X25519 public key, 32 bytes).
    pub enc: Vec<u8>,
    /// ChaCha20-Poly1305 ciphertext and tag of the encoded `DesiredState`.
    pub ciphertext: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Wire for SealedDesired {
    const KIND: u8 = 9;
    const KIND_NAME: &'static str = "sealed desired state";
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("cannot seal the desired state of {device}: {reason}")]
    Seal { device: String, reason: String },
}

fn aad(device: &Name, generation: u64) -> Vec<u8> {
    // Serializing a str and a u64 into a Vec cannot fail.
    postcard::to_stdvec(&(device, generation)).unwrap_or_default()
}

fn signed_bytes(device: &Name, generation: u64, enc: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let body = postcard::to_stdvec(&(device, generation, enc, ciphertext)).unwrap_or_default();
    [SEALED_CONTEXT, &body].concat()
}

/// Encodes `desired`, seals it to `recipient` and signs the result; the MQTT payload.
pub fn seal_desired<R: CryptoRng + RngCore>(
    desired: &DesiredState,
    recipient: &SealPublicKey,
    key: &SigningKey,
    rng: &mut R,
) -> Result<Vec<u8>, SealError> {
    let plain = encode(desired)?;
    let failed = |e: hpke::HpkeError| SealError::Seal {
        device: desired.device.to_string(),
        reason: e.to_string(),
    };
    let pk = recipient.to_hpke().map_err(failed)?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, SealKem, _>(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        &plain,
        &aad(&desired.device, desired.generation),
        rng,
    )
    .map_err(failed)?;
    let enc = enc.to_bytes().to_vec();
    let signed = signed_bytes(&desired.device, desired.generation, &enc, &ciphertext);
    Ok(encode(&SealedDesired {
        device: desired.device.clone(),
        generation: desired.generation,
        enc,
        ciphertext,
        signature: key.sign(&signed).to_bytes().to_vec(),
    })?)
}

/// The envelope's kind byte, if the payload has an envelope at all.
fn kind_of(payload: &[u8]) -> Option<u8> {
    let (_, rest) = postcard::take_from_bytes::<u16>(payload).ok()?;
    rest.first().copied()
}

/// `true` for a payload that is sealed (kind 9), as the hub writes today.
pub fn is_sealed(payload: &[u8]) -> bool {
    kind_of(payload) == Some(SealedDesired::KIND)
}

/// Checks and opens a desired-state payload for `device`: signed by `hub`, newer than
/// `held`, sealed to `seal` (or, from an older hub, only signed).
pub fn open_desired(
    payload: &[u8],
    hub: &VerifyingKey,
    device: &Name,
    held: u64,
    seal: &SealSecret,
) -> Result<DesiredState, AuthError> {
    if kind_of(payload) != Some(SealedDesired::KIND) {
        // Kind 3 (or garbage, refused there with the codec's own error).
        return verify_desired(payload, hub, device, held);
    }
    let sealed = verify_sealed(payload, hub, device, held)?;
    let enc = <SealKem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
        .map_err(|_| AuthError::Unseal)?;
    let plain = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, SealKem>(
        &OpModeR::Base,
        &seal.0,
        &enc,
        HPKE_INFO,
        &sealed.ciphertext,
        &aad(&sealed.device, sealed.generation),
    )
    .map_err(|_| AuthError::Unseal)?;
    let desired: DesiredState = decode_any(&plain)?;
    if desired.device != sealed.device || desired.generation != sealed.generation {
        return Err(AuthError::SealMismatch);
    }
    Ok(desired)
}

/// Checks a sealed payload without opening it: signed by `hub`, for `device`, newer than
/// `held`. What an observer without the device's key can know (device and generation).
pub fn verify_sealed(
    payload: &[u8],
    hub: &VerifyingKey,
    device: &Name,
    held: u64,
) -> Result<SealedDesired, AuthError> {
    let sealed: SealedDesired = decode_any(payload)?;
    let sig = Signature::from_slice(&sealed.signature).map_err(|_| AuthError::BadSignature)?;
    let signed = signed_bytes(
        &sealed.device,
        sealed.generation,
        &sealed.enc,
        &sealed.ciphertext,
    );
    hub.verify(&signed, &sig)
        .map_err(|_| AuthError::BadSignature)?;
    if &sealed.device != device {
        return Err(AuthError::WrongDevice {
            expected: device.to_string(),
            got: sealed.device.to_string(),
        });
    }
    if sealed.generation <= held {
        return Err(AuthError::Stale {
            got: sealed.generation,
            held,
        });
    }
    Ok(sealed)
}

#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
