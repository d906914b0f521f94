//! Placement: which devices run which Deployment, as a pure function of the Deployments,
//! the devices and the previous placement.
//!
//! Deterministic (only ordered maps, ties broken by name) and stable: an assignment that
//! still matches is kept, so nothing moves unless something relevant changed. This module
//! must never do IO, read clocks or depend on iteration order of hash maps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use drover_protocol::{Capacity, Name, WorkloadSpec};

use super::manifest::{Deployment, Placement};

/// Deployment name → names of the devices that run it.
pub type Assignments = BTreeMap<Name, BTreeSet<Name>>;

/// What placement needs to know about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: Name,
    /// Shared with the fleet snapshot: planning a 10,000-device fleet copies no labels.
    pub labels: Arc<BTreeMap<String, String>>,
    pub online: bool,
    /// `memory_bytes == 0` means unknown: everything fits.
    pub capacity: Capacity,
}

/// A Deployment that could not get all it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementWarning {
    pub deployment: Name,
    pub message: String,
}

/// Load accumulated over the Deployments placed so far in this run.
#[derive(Default)]
struct Load {
    workloads: BTreeMap<Name, u32>,
    memory: BTreeMap<Name, u64>,
}

impl Load {
    fn add(&mut self, device: &Name, memory: u64) {
        *self.workloads.entry(device.clone()).or_default() += 1;
        *self.memory.entry(device.clone()).or_default() += memory;
    }

    fn workloads(&self, device: &Name) -> u32 {
        self.workloads.get(device).copied().unwrap_or(0)
    }

    fn memory(&self, device: &Name) -> u64 {
        self.memory.get(device).copied().unwrap_or(0)
    }

    fn fits(&self, device: &DeviceInfo, memory: u64) -> bool {
        let total = device.capacity.memory_bytes;
        total == 0 || self.memory(&device.name).saturating_add(memory) <= total
    }
}

/// Sum of the containers' memory limits (unlimited counts as 0).
pub fn memory_of(spec: &WorkloadSpec) -> u64 {
    spec.containers
        .iter()
        .filter_map(|c| c.resources.memory_bytes)
        .fold(0, u64::saturating_add)
}

/// Places every Deployment (processed in name order) on the devices.
///
/// - Without `replicas`: every matching device, whatever its state or capacity.
/// - With `replicas: n`: `n` distinct matching devices. Previous devices that still match
///   are kept (online ones first, then by name, when there are too many); the rest are
///   chosen among matching devices where the memory fits, online ones first, then by the
///   Deployment's [`Placement`] strategy, ties by name.
///
/// Every Deployment gets an entry, possibly empty. Warnings say which got less than asked.
pub fn place(
    deployments: &[Deployment],
    devices: &[DeviceInfo],
    previous: &Assignments,
) -> (Assignments, Vec<PlacementWarning>) {
    let mut sorted: Vec<&Deployment> = deployments.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut load = Load::default();
    let mut result = Assignments::new();
    let mut warnings = Vec::new();
    for d in sorted {
        let matching: Vec<&DeviceInfo> = devices
            .iter()
            .filter(|dev| d.selector.matches(&dev.labels))
            .collect();
        let empty = BTreeSet::new();
        let before = previous.get(&d.name).unwrap_or(&empty);
        let (chosen, warning) = match d.replicas {
            None => (daemon(&matching), none_match(&matching)),
            Some(n) => replicated(d, n, &matching, before, &load),
        };
        let memory = memory_of(&d.template);
        for device in &chosen {
            load.add(device, memory);
        }
        if let Some(message) = warning {
            warnings.push(PlacementWarning {
                deployment: d.name.clone(),
                message,
            });
        }
        result.insert(d.name.clone(), chosen);
    }
    (result, warnings)
}

fn daemon(matching: &[&DeviceInfo]) -> BTreeSet<Name> {
    matching.iter().map(|d| d.name.clone()).collect()
}

fn none_match(matching: &[&DeviceInfo]) -> Option<String> {
    matching
        .is_empty()
        .then(|| "the selector matches no device".to_owned())
}

fn replicated(
    d: &Deployment,
    replicas: u32,
    matching: &[&DeviceInfo],
    previous: &BTreeSet<Name>,
    load: &Load,
) -> (BTreeSet<Name>, Option<String>) {
    let want = replicas as usize;
    let mut kept: Vec<&DeviceInfo> = matching
        .iter()
        .copied()
        .filter(|dev| previous.contains(&dev.name))
        .collect();
    kept.sort_by(|a, b| (!a.online, &a.name).cmp(&(!b.online, &b.name)));
    kept.truncate(want);
    let mut chosen: BTreeSet<Name> = kept.iter().map(|dev| dev.name.clone()).collect();
    let memory = memory_of(&d.template);
    let mut candidates: Vec<&DeviceInfo> = matching
        .iter()
        .copied()
        .filter(|dev| !chosen.contains(&dev.name) && load.fits(dev, memory))
        .collect();
    let room = chosen.len() + candidates.len();
    // Within one Deployment each device gets at most one replica, so the ranking of the
    // remaining candidates does not change as we pick: sort once.
    match d.placement {
        Placement::Spread => {
            candidates.sort_by_key(|dev| (!dev.online, load.workloads(&dev.name), &dev.name));
        }
        Placement::Binpack => {
            candidates.sort_by_key(|dev| (!dev.online, Reverse(load.memory(&dev.name)), &dev.name));
        }
    }
    let missing = want.saturating_sub(chosen.len());
    chosen.extend(candidates.iter().take(missing).map(|dev| dev.name.clone()));
    (chosen, shortfall(want, matching.len(), room, memory))
}

fn shortfall(want: usize, matching: usize, room: usize, memory: u64) -> Option<String> {
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let wants = plural(want, "replica", "replicas");
    if matching < want {
        let only = plural(matching, "device matches", "devices match");
        Some(format!("wants {wants}, only {only}"))
    } else if room < want {
        Some(format!(
            "wants {wants}, only {room} of {matching} matching devices have {memory} bytes of memory free"
        ))
    } else {
        None
    }
}

/// What each device should run: the templates of the Deployments placed on it, named after
/// their Deployment and sorted by name. Devices with nothing placed on them are absent.
/// Each Deployment's workload is one shared allocation, however many devices run it.
pub fn desired_by_device(
    deployments: &[Deployment],
    placement: &Assignments,
) -> BTreeMap<Name, Vec<Arc<WorkloadSpec>>> {
    let mut out: BTreeMap<Name, Vec<Arc<WorkloadSpec>>> = BTreeMap::new();
    for d in deployments {
        let Some(devices) = placement.get(&d.name) else {
            continue;
        };
        let mut spec = d.template.clone();
        spec.name = d.name.clone();
        let spec = Arc::new(spec);
        for device in devices {
            out.entry(device.clone()).or_default().push(spec.clone());
        }
    }
    for specs in out.values_mut() {
        specs.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}
