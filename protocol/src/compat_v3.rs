//! The shapes of envelope version 3 (before `ContainerSpec.security`) and their
//! conversion into today's types (the default, unprivileged security context).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::types::{
    ContainerSpec, Dependency, DesiredState, EnvVar, HostDevice, Mount, NetworkMode, Probe,
    Resources, RestartPolicy, WorkloadSpec,
};
use crate::{ImageRef, Name};

/// `DesiredState` as encoded in envelope version 3.
#[derive(Debug, Deserialize)]
pub struct DesiredStateV3 {
    device: Name,
    generation: u64,
    workloads: Vec<WorkloadSpecV3>,
}

#[derive(Debug, Deserialize)]
struct WorkloadSpecV3 {
    name: Name,
    containers: Vec<ContainerSpecV3>,
    restart_policy: RestartPolicy,
    network: NetworkMode,
    volumes: Vec<Name>,
    stop_grace_ms: u32,
    labels: BTreeMap<String, String>,
    depends_on: Vec<Dependency>,
    revision: u64,
    health_timeout_ms: u32,
    min_ready_ms: u32,
    fallback: Option<Box<WorkloadSpecV3>>,
}

#[derive(Debug, Deserialize)]
struct ContainerSpecV3 {
    name: Name,
    image: ImageRef,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    working_dir: Option<String>,
    mounts: Vec<Mount>,
    resources: Resources,
    devices: Vec<HostDevice>,
    init: bool,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    depends_on: Vec<Dependency>,
}

impl From<DesiredStateV3> for DesiredState {
    fn from(old: DesiredStateV3) -> DesiredState {
        DesiredState {
            device: old.device,
            generation: old.generation,
            workloads: old.workloads.into_iter().map(WorkloadSpec::from).collect(),
        }
    }
}

impl From<WorkloadSpecV3> for WorkloadSpec {
    fn from(old: WorkloadSpecV3) -> WorkloadSpec {
        WorkloadSpec {
            name: old.name,
            containers: old.containers.into_iter().map(Into::into).collect(),
            restart_policy: old.restart_policy,
            network: old.network,
            volumes: old.volumes,
            stop_grace_ms: old.stop_grace_ms,
            labels: old.labels,
            depends_on: old.depends_on,
            revision: old.revision,
            health_timeout_ms: old.health_timeout_ms,
            min_ready_ms: old.min_ready_ms,
            fallback: old.fallback.map(|f| Box::new((*f).into())),
        }
    }
}

impl From<ContainerSpecV3> for ContainerSpec {
    fn from(old: ContainerSpecV3) -> ContainerSpec {
        ContainerSpec {
            name: old.name,
            image: old.image,
            command: old.command,
            args: old.args,
            env: old.env,
            working_dir: old.working_dir,
            mounts: old.mounts,
            resources: old.resources,
            devices: old.devices,
            init: old.init,
            liveness_probe: old.liveness_probe,
            readiness_probe: old.readiness_probe,
            startup_probe: old.startup_probe,
            depends_on: old.depends_on,
            security: Default::default(),
            env_refs: vec![],
        }
    }
}
