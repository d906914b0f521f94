//! Freshness of what a device says about itself. Presence (`online` when the agent
//! connects, `offline` as its MQTT last will) and statuses carry a sequence number that
//! rises strictly per device across agent restarts (`epoch << 32 | counter`, like
//! telemetry), under the same MAC as the message: the hub keeps the last one it accepted
//! per device and kind and drops anything not above it. So a rogue on the broker can
//! neither mark a device offline (steering new replicas away) nor replay an old "healthy"
//! status.
//!
//! Agents from before this change send plain `online` / `offline` and unsequenced
//! statuses (`auth::AuthedStatus`); the `open_*` functions read those with `seq: None`,
//! and the hub accepts them only from a device that never sent a sequenced one.
//!
//! Pure; verification never panics and says why a message was refused.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Name;
use crate::auth::{AuthError, open_status};
use crate::codec::{CodecError, Wire, encode};
use crate::compat::{Compat, decode_any};
use crate::keys::StatusKey;
use crate::types::DeviceStatus;

/// Domain separation: a MAC over a presence or a status is valid for nothing else.
const PRESENCE_CONTEXT: &[u8] = b"drover/v1/presence\0";
const STATUS_CONTEXT: &[u8] = b"drover/v1/status-seq\0";

/// A presence message as published on `…/online` (retained).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPresence {
    pub online: bool,
    pub seq: u64,
    /// HMAC-SHA256 by the device's status key over the context, the device name, `online`
    /// and `seq`.
    pub mac: Vec<u8>,
}

impl Wire for SealedPresence {
    const KIND: u8 = 12;
    const KIND_NAME: &'static str = "sealed presence";
}

impl Compat for SealedPresence {
    type V1 = SealedPresence;
    type V2 = SealedPresence;
    type V3 = SealedPresence;
    type V4 = SealedPresence;
}

/// A status as published on `…/status`: its encoded bytes, its sequence number and a MAC
/// over both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedStatus {
    pub seq: u64,
    pub status: Vec<u8>,
    pub mac: Vec<u8>,
}

impl Wire for SequencedStatus {
    const KIND: u8 = 13;
    const KIND_NAME: &'static str = "sequenced status";
}

impl Compat for SequencedStatus {
    type V1 = SequencedStatus;
    type V2 = SequencedStatus;
    type V3 = SequencedStatus;
    type V4 = SequencedStatus;
}

/// A presence as read: `seq` is `None` for the plain text of older agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presence {
    pub online: bool,
    pub seq: Option<u64>,
}

fn mac(context: &[u8], device: &Name, key: &StatusKey) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(context);
    m.update(device.as_str().as_bytes());
    m.update(&[0]);
    m
}

fn presence_mac(device: &Name, online: bool, seq: u64, key: &StatusKey) -> Hmac<Sha256> {
    let mut m = mac(PRESENCE_CONTEXT, device, key);
    m.update(&[u8::from(online)]);
    m.update(&seq.to_be_bytes());
    m
}

/// The payload announcing `device` online (or, as its last will, offline) with `seq`,
/// authenticated with the status key derived from the device's `credential`.
pub fn seal_presence(
    device: &Name,
    online: bool,
    seq: u64,
    credential: &[u8],
) -> Result<Vec<u8>, CodecError> {
    seal_presence_keyed(device, online, seq, &StatusKey::derive(credential))
}

/// [`seal_presence`] with the status key itself (an enrolled device's agreed key).
pub fn seal_presence_keyed(
    device: &Name,
    online: bool,
    seq: u64,
    key: &StatusKey,
) -> Result<Vec<u8>, CodecError> {
    let tag = presence_mac(device, online, seq, key).finalize();
    encode(&SealedPresence {
        online,
        seq,
        mac: tag.into_bytes().to_vec(),
    })
}

/// Reads a payload received on `device`'s presence topic: sealed with that device's key,
/// or the plain `online` / `offline` of an older agent (`seq: None`). Does not judge the
/// sequence: the caller compares it with the last one accepted.
pub fn open_presence(
    payload: &[u8],
    device: &Name,
    key: &StatusKey,
) -> Result<Presence, AuthError> {
    match payload {
        b"online" => {
            return Ok(Presence {
                online: true,
                seq: None,
            });
        }
        b"offline" => {
            return Ok(Presence {
                online: false,
                seq: None,
            });
        }
        _ => {}
    }
    let p: SealedPresence = decode_any(payload)?;
    presence_mac(device, p.online, p.seq, key)
        .verify_slice(&p.mac)
        .map_err(|_| AuthError::BadMac)?;
    Ok(Presence {
        online: p.online,
        seq: Some(p.seq),
    })
}

/// Encodes a status with its sequence number and authenticates both with the status key
/// derived from the device's `credential`.
pub fn seal_status_seq(
    status: &DeviceStatus,
    seq: u64,
    credential: &[u8],
) -> Result<Vec<u8>, CodecError> {
    seal_status_seq_keyed(status, seq, &StatusKey::derive(credential))
}

/// [`seal_status_seq`] with the status key itself (an enrolled device's agreed key).
pub fn seal_status_seq_keyed(
    status: &DeviceStatus,
    seq: u64,
    key: &StatusKey,
) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(status)?;
    let mut m = mac(STATUS_CONTEXT, &status.device, key);
    m.update(&seq.to_be_bytes());
    m.update(&bytes);
    encode(&SequencedStatus {
        seq,
        status: bytes,
        mac: m.finalize().into_bytes().to_vec(),
    })
}

/// Checks a status payload received on `device`'s topic: a sequenced one (with its
/// `seq`), or the unsequenced `auth::AuthedStatus` of an older agent (`None`). Does not
/// judge the sequence.
pub fn open_status_seq(
    payload: &[u8],
    device: &Name,
    key: &StatusKey,
) -> Result<(DeviceStatus, Option<u64>), AuthError> {
    let sealed: SequencedStatus = match decode_any(payload) {
        Ok(s) => s,
        Err(CodecError::Kind { .. }) => {
            return open_status(payload, device, key).map(|s| (s, None));
        }
        Err(e) => return Err(e.into()),
    };
    let mut m = mac(STATUS_CONTEXT, device, key);
    m.update(&sealed.seq.to_be_bytes());
    m.update(&sealed.status);
    m.verify_slice(&sealed.mac).map_err(|_| AuthError::BadMac)?;
    let status: DeviceStatus = decode_any(&sealed.status)?;
    if &status.device != device {
        return Err(AuthError::WrongDevice {
            expected: device.to_string(),
            got: status.device.to_string(),
        });
    }
    Ok((status, Some(sealed.seq)))
}

/// Whether a message with `seq` may be accepted after `floor` (the highest sequence
/// accepted from that device for that kind; 0 for none): sequenced ones must rise,
/// unsequenced ones only count while the device has never sent a sequenced one.
pub fn is_fresh(seq: Option<u64>, floor: u64) -> bool {
    match seq {
        Some(s) => s > floor,
        None => floor == 0,
    }
}

#[cfg(test)]
#[path = "freshness_tests.rs"]
mod tests;
