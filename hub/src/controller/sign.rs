//! Signing the changed devices' desired states, spread over the machine's cores: at
//! 10,000 devices signing is the largest CPU cost of an apply. Each state is also checked
//! against the one message-size limit (`drover_protocol::limits`) before anything is
//! committed.

use std::collections::BTreeMap;

use drover_protocol::auth::sign_desired;
use drover_protocol::codec::CodecError;
use drover_protocol::limits::check_desired_size;
use drover_protocol::{DesiredState, Name, encode};
use ed25519_dalek::SigningKey;

use super::ControllerError;
use crate::fleet::DeviceChange;
use crate::store::DesiredRow;

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

/// Encodes and signs every change, in device-name order.
pub fn sign_changes(
    key: &SigningKey,
    changes: &BTreeMap<Name, DeviceChange>,
) -> Result<Vec<Signed>, ControllerError> {
    let items: Vec<(&Name, &DeviceChange)> = changes.iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < PARALLEL_FROM || threads == 1 {
        return items
            .into_iter()
            .map(|(d, c)| sign_one(key, d, c))
            .collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(d, c)| sign_one(key, d, c))
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
    change: &DeviceChange,
) -> Result<Signed, ControllerError> {
    let mut state = DesiredState {
        device: device.clone(),
        generation: 0,
        workloads: change.workloads.clone(),
    };
    // The canonical encoding with generation 0 is what the store compares and keeps.
    let too_big = |e| match e {
        CodecError::TooLarge(n) => oversize(device, n),
        e => ControllerError::Codec(e),
    };
    let workloads = encode(&state).map_err(too_big)?;
    state.generation = change.generation;
    let payload = sign_desired(&state, key).map_err(too_big)?;
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
