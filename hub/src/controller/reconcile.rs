//! One reconcile pass: store → placement → desired workloads per device → a new signed
//! desired state (next generation) for each device whose workload list really changed.
//!
//! Runs inside the caller's transaction and returns the messages to publish once it has
//! committed. Generations come from the `desired` table, whose rows are never deleted, so
//! they only ever grow.

use std::collections::{BTreeMap, BTreeSet};

use drover_protocol::auth::sign_desired;
use drover_protocol::{DesiredState, Name, WorkloadSpec, encode, topics};
use ed25519_dalek::SigningKey;

use super::{ControllerError, Publish, Settings};
use crate::fleet::{self, Assignments, Deployment, DeviceInfo};
use crate::store::{DesiredRow, StatusRow, Store};

/// Placement warnings by deployment name.
pub type Warnings = BTreeMap<String, Vec<String>>;

pub fn reconcile(
    s: &Store,
    key: &SigningKey,
    settings: &Settings,
    now_ms: u64,
) -> Result<(Vec<Publish>, Warnings), ControllerError> {
    let deployments = load_deployments(s)?;
    let devices = device_infos(s, settings, now_ms)?;
    let previous = to_names(s.placement()?);
    let (placement, warns) = fleet::place(&deployments, &devices, &previous);
    record_moves(s, &previous, &placement, now_ms)?;
    s.set_placement(&to_strings(&placement))?;
    let mut desired = fleet::desired_by_device(&deployments, &placement);
    let mut pubs = Vec::new();
    for dev in &devices {
        let workloads = desired.remove(&dev.name).unwrap_or_default();
        if let Some(p) = bump_if_changed(s, key, &dev.name, workloads, now_ms)? {
            pubs.push(p);
        }
    }
    let mut warnings = Warnings::new();
    for w in warns {
        warnings
            .entry(w.deployment.to_string())
            .or_default()
            .push(w.message);
    }
    Ok((pubs, warnings))
}

/// Every stored Deployment, decoded.
pub fn load_deployments(s: &Store) -> Result<Vec<Deployment>, ControllerError> {
    s.deployments()?
        .into_iter()
        .map(|(name, spec, _)| {
            serde_json::from_str(&spec).map_err(|e| {
                ControllerError::Invalid(format!("stored deployment {name} is unreadable: {e}"))
            })
        })
        .collect()
}

/// Online: the last presence message did not say offline, and a status arrived within
/// `offline_after` (presence alone is not enough: a broker may replay a stale one).
pub fn is_online(row: Option<&StatusRow>, settings: &Settings, now_ms: u64) -> bool {
    row.is_some_and(|r| {
        r.presence != Some(false)
            && r.last_seen_ms > 0
            && now_ms.saturating_sub(r.last_seen_ms) <= settings.offline_after_ms
    })
}

fn device_infos(
    s: &Store,
    settings: &Settings,
    now_ms: u64,
) -> Result<Vec<DeviceInfo>, ControllerError> {
    let statuses = s.statuses()?;
    let mut out = Vec::new();
    for d in s.devices()? {
        let Ok(name) = Name::new(d.name.clone()) else {
            continue; // Names are checked on insert; a bad row cannot be addressed anyway.
        };
        let row = statuses.get(&d.name);
        out.push(DeviceInfo {
            name,
            labels: d.labels,
            online: is_online(row, settings, now_ms),
            capacity: row
                .and_then(|r| r.status.as_ref())
                .map(|st| st.capacity)
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Signs and stores the next generation when `workloads` differ from the stored ones.
fn bump_if_changed(
    s: &Store,
    key: &SigningKey,
    device: &Name,
    workloads: Vec<WorkloadSpec>,
    now_ms: u64,
) -> Result<Option<Publish>, ControllerError> {
    let mut state = DesiredState {
        device: device.clone(),
        generation: 0,
        workloads,
    };
    // The canonical encoding with generation 0 is what "changed" is measured on.
    let canonical = encode(&state)?;
    let old = s.desired(device.as_str())?;
    if old.as_ref().is_some_and(|o| o.workloads == canonical) {
        return Ok(None);
    }
    state.generation = old.map_or(0, |o| o.generation) + 1;
    let payload = sign_desired(&state, key)?;
    let row = DesiredRow {
        generation: state.generation,
        workloads: canonical,
        payload: payload.clone(),
    };
    s.put_desired(device.as_str(), &row, now_ms)?;
    let names: Vec<&str> = state.workloads.iter().map(|w| w.name.as_str()).collect();
    let msg = format!(
        "desired generation {}: [{}]",
        state.generation,
        names.join(", ")
    );
    s.add_event(now_ms, "device", device.as_str(), &msg)?;
    s.bump_counter("desired_generations", 1)?;
    tracing::info!(device = %device, generation = state.generation, workloads = names.len(), "desired state changed");
    Ok(Some(Publish {
        topic: topics::desired(device),
        payload,
    }))
}

fn record_moves(
    s: &Store,
    previous: &Assignments,
    next: &Assignments,
    now_ms: u64,
) -> Result<(), ControllerError> {
    let empty = BTreeSet::new();
    for (dep, devices) in next {
        let before = previous.get(dep).unwrap_or(&empty);
        for d in devices.difference(before) {
            s.add_event(
                now_ms,
                "deployment",
                dep.as_str(),
                &format!("placed on {d}"),
            )?;
        }
        for d in before.difference(devices) {
            s.add_event(
                now_ms,
                "deployment",
                dep.as_str(),
                &format!("removed from {d}"),
            )?;
        }
    }
    Ok(())
}

fn to_names(p: BTreeMap<String, BTreeSet<String>>) -> Assignments {
    p.into_iter()
        .filter_map(|(dep, devs)| {
            let devs = devs.into_iter().filter_map(|d| Name::new(d).ok()).collect();
            Some((Name::new(dep).ok()?, devs))
        })
        .collect()
}

fn to_strings(p: &Assignments) -> BTreeMap<String, BTreeSet<String>> {
    p.iter()
        .map(|(dep, devs)| {
            (
                dep.to_string(),
                devs.iter().map(|d| d.to_string()).collect(),
            )
        })
        .collect()
}
