//! Sealing and signing the changed devices' desired states, spread over the machine's
//! cores: at 10,000 devices this is the largest CPU cost of an apply. Each state is sealed
//! to its device's X25519 key (HPKE, `drover_protocol::sealed`), so that neither the broker
//! nor another device reads it, then signed. Each is also checked against the one
//! message-size limit (`drover_protocol::limits`) before anything is committed.

use std::collections::BTreeMap;

use drover_protocol::codec::CodecError;
use drover_protocol::keys::SealPublicKey;
use drover_protocol::limits::check_desired_size;
use drover_protocol::sealed::rand_core::{CryptoRng, RngCore};
use drover_protocol::sealed::{SealError, seal_desired};
use drover_protocol::{DesiredState, Name, encode};
use ed25519_dalek::SigningKey;

use super::ControllerError;
use crate::broker::Credentials;
use crate::fleet::DeviceChange;
use crate::secrets::{Objects, fill_values};
use crate::store::DesiredRow;

/// The operating system's random generator (getrandom), for the ephemeral key of each
/// sealed state; in the shape the HPKE crate asks for.
struct OsRng;

impl RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // No randomness means no sealing: a hub that cannot read the OS's generator must
        // not publish anything predictable.
        if let Err(e) = getrandom::getrandom(dest) {
            panic!("the operating system's random generator failed: {e}");
        }
    }
}

impl CryptoRng for OsRng {}

/// Below this many changes one thread signs them all.
const PARALLEL_FROM: usize = 64;

fn oversize(device: &Name, bytes: usize) -> ControllerError {
    match check_desired_size(device, bytes) {
        Err(e) => ControllerError::Invalid(e.to_string()),
        Ok(()) => {
            ControllerError::Invalid(format!("the desired state of device {device} is too large"))
        }
    }
}

/// One device's next desired state, signed and ready to store and publish.
pub struct Signed {
    pub device: Name,
    pub row: DesiredRow,
}

/// Encodes, seals and signs every change, in device-name order. Every changed device
/// must have its keys in `keys`.
pub fn sign_changes(
    key: &SigningKey,
    keys: &Credentials,
    changes: &BTreeMap<Name, DeviceChange>,
    objects: &Objects,
) -> Result<Vec<Signed>, ControllerError> {
    let map = keys.read().unwrap_or_else(|e| e.into_inner());
    let mut items = Vec::with_capacity(changes.len());
    for (d, c) in changes {
        let Some(k) = map.get(d.as_str()) else {
            return Err(ControllerError::Invalid(format!(
                "device {d} has no sealing key: it is not registered"
            )));
        };
        items.push((d, k.seal_public, c));
    }
    drop(map);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < PARALLEL_FROM || threads == 1 {
        return items
            .into_iter()
            .map(|(d, pk, c)| sign_one(key, d, &pk, c, objects))
            .collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(d, pk, c)| sign_one(key, d, pk, c, objects))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for w in workers {
            let part = w
                .join()
                .map_err(|_| ControllerError::Invalid("a signing thread panicked".to_owned()))??;
            out.extend(part);
        }
        Ok(out)
    })
}

fn sign_one(
    key: &SigningKey,
    device: &Name,
    seal: &SealPublicKey,
    change: &DeviceChange,
    objects: &Objects,
) -> Result<Signed, ControllerError> {
    let mut state = DesiredState {
        device: device.clone(),
        generation: 0,
        workloads: change.workloads.iter().map(|w| (**w).clone()).collect(),
    };
    // The canonical encoding with generation 0 is what the store compares and keeps.
    let too_big = |e| match e {
        CodecError::TooLarge(n) => oversize(device, n),
        e => ControllerError::Codec(e),
    };
    let workloads = encode(&state).map_err(too_big)?;
    state.generation = change.generation;
    // Values only in what is sealed: the canonical bytes above keep digests.
    for w in &mut state.workloads {
        fill_values(w, objects);
    }
    let payload = seal_desired(&state, seal, key, &mut OsRng).map_err(|e| match e {
        SealError::Codec(e) => too_big(e),
        e => ControllerError::Invalid(e.to_string()),
    })?;
    check_desired_size(device, payload.len())
        .map_err(|e| ControllerError::Invalid(e.to_string()))?;
    Ok(Signed {
        device: device.clone(),
        row: DesiredRow {
            generation: change.generation,
            workloads,
            payload,
        },
    })
}

/// A stored payload written before desired states were sealed (only signed), sealed now
/// with the same generation, so that what the hub republishes is never in clear. `None`
/// when `payload` is sealed already.
pub(super) fn reseal_stored(
    key: &SigningKey,
    keys: &Credentials,
    device: &Name,
    state: &DesiredState,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, ControllerError> {
    if drover_protocol::sealed::is_sealed(payload) {
        return Ok(None);
    }
    let seal = keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(device.as_str())
        .map(|k| k.seal_public)
        .ok_or_else(|| ControllerError::Invalid(format!("device {device} has no sealing key")))?;
    let sealed = seal_desired(state, &seal, key, &mut OsRng)
        .map_err(|e| ControllerError::Invalid(e.to_string()))?;
    Ok(Some(sealed))
}
