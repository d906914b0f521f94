//! One telemetry sample: the device reading, each target container's cgroup reading and
//! the next sequence number, put together in wire units.
//!
//! The targets (which containers exist, their cgroups and restarts) come from the daemon
//! after each reconcile pass; this module never looks at the agent's records itself.

use drover_protocol::{Name, Telemetry, WorkloadUsage};

use super::cgroup::CgroupReader;
use super::device::DeviceReader;
use super::seq::SeqGen;
use super::units::{container_usage, device_usage};

/// A workload whose containers are sampled, in the agent's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadTarget {
    pub name: Name,
    pub containers: Vec<ContainerTarget>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerTarget {
    pub name: Name,
    /// Its cgroup as in `linux.cgroupsPath` (`/drover/web/main`).
    pub cgroups_path: String,
    /// Restarts so far, as the agent counts them.
    pub restarts: u32,
}

pub struct Sampler {
    device: DeviceReader,
    cgroups: CgroupReader,
    seq: SeqGen,
}

impl Sampler {
    pub fn new(device: DeviceReader, cgroups: CgroupReader, seq: SeqGen) -> Self {
        Sampler {
            device,
            cgroups,
            seq,
        }
    }

    /// Reads everything now; `time_s` is the wall clock in Unix seconds.
    pub fn sample(&mut self, targets: &[WorkloadTarget], time_s: u64) -> Telemetry {
        let device = device_usage(&self.device.read());
        Telemetry {
            seq: self.seq.next_seq(),
            time_s,
            device,
            workloads: workloads(&self.cgroups, targets),
            // Set by the queue when the sample is handed to the link.
            dropped: 0,
        }
    }
}

/// Each target workload with the containers whose cgroup could be read; workloads left
/// with none are left out.
pub fn workloads(cgroups: &CgroupReader, targets: &[WorkloadTarget]) -> Vec<WorkloadUsage> {
    targets
        .iter()
        .filter_map(|w| {
            let containers: Vec<_> = w
                .containers
                .iter()
                .filter_map(|c| {
                    let raw = cgroups.read(&c.cgroups_path)?;
                    Some(container_usage(c.name.clone(), &raw, c.restarts))
                })
                .collect();
            (!containers.is_empty()).then(|| WorkloadUsage {
                name: w.name.clone(),
                containers,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroups::CgroupVersion;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn target(wl: &str, containers: &[(&str, u32)]) -> WorkloadTarget {
        WorkloadTarget {
            name: name(wl),
            containers: containers
                .iter()
                .map(|(c, restarts)| ContainerTarget {
                    name: name(c),
                    cgroups_path: format!("/drover/{wl}/{c}"),
                    restarts: *restarts,
                })
                .collect(),
        }
    }

    #[test]
    fn only_containers_with_a_cgroup_are_sent_in_the_targets_order() {
        let root = tempfile::tempdir().unwrap();
        for (rel, bytes) in [("drover/web/main", 2048), ("drover/db/main", 4096)] {
            let d = root.path().join(rel);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("memory.current"), format!("{bytes}\n")).unwrap();
        }
        let reader = CgroupReader::at(CgroupVersion::V2, root.path());
        let targets = [
            target("web", &[("main", 3), ("sidecar", 0)]),
            target("gone", &[("main", 0)]),
            target("db", &[("main", 0)]),
        ];
        let got = workloads(&reader, &targets);
        let names: Vec<(&str, Vec<&str>)> = got
            .iter()
            .map(|w| {
                let cs = w.containers.iter().map(|c| c.name.as_str()).collect();
                (w.name.as_str(), cs)
            })
            .collect();
        assert_eq!(names, [("web", vec!["main"]), ("db", vec!["main"])]);
        assert_eq!(got[0].containers[0].restarts, 3);
        assert_eq!(got[0].containers[0].memory_kib, 2);
        assert_eq!(got[1].containers[0].memory_kib, 4);
    }

    #[test]
    fn samples_of_this_device_fit_the_wire_budget_and_rise_in_seq() {
        let dir = tempfile::tempdir().unwrap();
        let device = DeviceReader::new(dir.path()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("drover/web/main");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("memory.current"), "52428800\n").unwrap();
        fs::write(d.join("memory.peak"), "62914560\n").unwrap();
        fs::write(d.join("cpu.stat"), "usage_usec 123456789\n").unwrap();
        fs::write(d.join("pids.current"), "12\n").unwrap();
        let cgroups = CgroupReader::at(CgroupVersion::V2, root.path());
        let mut s = Sampler::new(device, cgroups, SeqGen::new(1_780_000_000));
        let targets = [target("web", &[("main", 2)])];
        let first = s.sample(&targets, 1_780_000_000);
        let second = s.sample(&targets, 1_780_000_010);
        assert!(second.seq > first.seq);
        let cred = b"credential";
        let payload =
            drover_protocol::telemetry::seal_telemetry(&second, &name("pi-7"), cred).unwrap();
        assert!(payload.len() <= 96, "{} bytes: {second:?}", payload.len());
    }
}
