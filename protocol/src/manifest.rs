//! Workload manifests (YAML) and their conversion into wire types.
//!
//! A manifest file holds one or more `kind: Workload` documents (Kubernetes-flavoured,
//! camelCase, unknown fields rejected). Parsing happens in two steps: serde-saphyr turns the
//! text into the manifest structs below (syntax, types, quantities), then [`WorkloadTemplateSpec::to_spec`]
//! checks what types cannot say (unique names, absolute paths, declared volumes) and
//! builds a [`WorkloadSpec`]. Every error names the file, line and column; semantic errors
//! point at the offending node through `serde_saphyr::Spanned`.
//!
//! This module must never do IO: callers read the file and pass its name and text.
//! `WorkloadTemplateSpec` is meant to be reused as the hub's Deployment `template.spec`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_saphyr::{Budget, MessageFormatter, Options, Spanned, UserMessageFormatter};

mod health;
mod refs;
mod security;

pub use health::{
    ContainerDependencyManifest, ProbeKind, ProbeManifest, WorkloadDependencyManifest, find_cycle,
    join_cycle, workload_cycle,
};
pub use refs::{
    ConfigMapVolumeManifest, KeyRefManifest, KeyToPathManifest, RefSite, SecretVolumeManifest,
    ValueFromManifest, is_valid_key,
};
pub use security::{CapabilitiesManifest, SecurityContextManifest};

use crate::labels::{check_label_key, check_label_value};
use crate::quantity::{ByteSize, CpuMillis, DurationMs};
use crate::{
    ContainerSpec, EnvVar, HostDevice, ImageRef, Mount, MountSource, Name, NetworkMode, Resources,
    RestartPolicy, WorkloadSpec,
};

/// The only `apiVersion` understood so far.
pub const API_VERSION: &str = "drover.dev/v1";
/// Longest manifest file accepted, before any parsing.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Stop grace period when a manifest gives none.
pub const DEFAULT_STOP_GRACE: DurationMs = DurationMs(10_000);

/// A manifest problem, located as `file:line:column` (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ManifestError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl ManifestError {
    /// An error located at `node`.
    pub fn at<T>(file: &str, node: &Spanned<T>, message: impl Into<String>) -> Self {
        let loc = node.referenced;
        ManifestError {
            file: file.to_owned(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
        }
    }

    /// Wraps a serde-saphyr error (syntax, type, unknown field, budget) with the file name.
    pub fn from_yaml(file: &str, err: &serde_saphyr::Error) -> Self {
        let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
        let message = UserMessageFormatter.format_message(err.without_snippet());
        ManifestError {
            file: file.to_owned(),
            line,
            column,
            message: message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        }
    }
}

/// serde-saphyr options for untrusted manifests: bounded depth, nodes, documents and
/// aliases, duplicate keys rejected, no merge keys.
pub fn yaml_options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = 32;
    // A fleet file may list thousands of Device documents; the 1 MiB input bound below
    // keeps all of these finite.
    budget.max_documents = 20_000;
    budget.max_nodes = 500_000;
    budget.max_events = 1_000_000;
    budget.max_aliases = 64;
    budget.max_anchors = 64;
    budget.max_total_scalar_bytes = MAX_MANIFEST_BYTES;
    budget.max_reader_input_bytes = Some(MAX_MANIFEST_BYTES);
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    options.alias_limits.max_total_replayed_events = 10_000;
    options.with_snippet = false;
    options
}

/// One `kind: Workload` document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadManifest {
    pub api_version: ApiVersion,
    pub kind: WorkloadKind,
    pub metadata: ObjectMeta,
    pub spec: WorkloadTemplateSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ApiVersion {
    #[serde(rename = "drover.dev/v1")]
    V1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum WorkloadKind {
    Workload,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Name,
    /// The workload's labels, checked like device labels and kept in `WorkloadSpec::labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
}

/// The pod-like part of a manifest: a Workload's `spec`, later a Deployment's `template.spec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadTemplateSpec {
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub stop_grace_period: Option<Spanned<DurationMs>>,
    #[serde(default)]
    pub volumes: Vec<VolumeDecl>,
    pub containers: Spanned<Vec<ContainerManifest>>,
    /// Workloads of the same device this one starts after.
    #[serde(default)]
    pub depends_on: Vec<Spanned<WorkloadDependencyManifest>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Host,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeDecl {
    pub name: Spanned<Name>,
    /// A Secret's keys as files (hub Deployments only).
    #[serde(default)]
    pub secret: Option<SecretVolumeManifest>,
    /// A ConfigMap's keys as files (hub Deployments only).
    #[serde(default)]
    pub config_map: Option<ConfigMapVolumeManifest>,
}

impl VolumeDecl {
    fn is_files(&self) -> bool {
        self.secret.is_some() || self.config_map.is_some()
    }
}

/// The `secret` / `configMap` volumes of a template, by name.
type FileVolumes = BTreeMap<Name, crate::FilesSource>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerManifest {
    pub name: Spanned<Name>,
    pub image: Spanned<ImageRef>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvManifest>,
    #[serde(default)]
    pub working_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub resources: ResourcesManifest,
    #[serde(default)]
    pub devices: Vec<Spanned<DeviceManifest>>,
    #[serde(default)]
    pub mounts: Vec<Spanned<MountManifest>>,
    /// `init: true` runs a minimal init as PID 1 (`docker run --init`).
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub liveness_probe: Option<Spanned<ProbeManifest>>,
    #[serde(default)]
    pub readiness_probe: Option<Spanned<ProbeManifest>>,
    #[serde(default)]
    pub startup_probe: Option<Spanned<ProbeManifest>>,
    /// Containers of the same workload this one starts after.
    #[serde(default)]
    pub depends_on: Vec<Spanned<ContainerDependencyManifest>>,
    /// User, capabilities, read-only root, privileged (Kubernetes' names).
    #[serde(default)]
    pub security_context: SecurityContextManifest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvManifest {
    pub name: Spanned<String>,
    #[serde(default)]
    pub value: String,
    /// A Secret's or ConfigMap's key instead of `value` (hub Deployments only).
    #[serde(default)]
    pub value_from: Option<Spanned<ValueFromManifest>>,
}

/// Smallest memory limit accepted: Docker's minimum; nothing starts in less.
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// Smallest CPU limit accepted: 1 ms of CFS quota per 100 ms period (the kernel's minimum).
pub const MIN_CPU_MILLIS: u64 = 10;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcesManifest {
    pub memory: Option<Spanned<ByteSize>>,
    pub cpu: Option<Spanned<CpuMillis>>,
    pub pids: Option<Spanned<u32>>,
}

/// A device: either a path (`/dev/i2c-1`, mapped to the same path, `rwm`) or a map.
#[derive(Debug, Clone)]
pub enum DeviceManifest {
    Path(String),
    Full(DeviceMap),
}

/// Hand-written instead of `untagged` so that errors inside the map keep their message
/// and location.
impl<'de> Deserialize<'de> for DeviceManifest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DeviceManifest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a device path like /dev/i2c-1 or a map with hostPath")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceManifest, E> {
                Ok(DeviceManifest::Path(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<DeviceManifest, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(map);
                DeviceMap::deserialize(de).map(DeviceManifest::Full)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceMap {
    pub host_path: String,
    pub container_path: Option<String>,
    pub permissions: Option<String>,
}

/// A mount: exactly one of `volume`, `hostPath` or `tmpfs`, and a `mountPath`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountManifest {
    pub volume: Option<Name>,
    pub host_path: Option<String>,
    pub tmpfs: Option<ByteSize>,
    pub mount_path: Spanned<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// Parses every `Workload` document of one manifest file.
pub fn parse_workloads(file_name: &str, text: &str) -> Result<Vec<WorkloadSpec>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError {
            file: file_name.to_owned(),
            line: 1,
            column: 1,
            message: format!("file is larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    let docs: Vec<Spanned<WorkloadManifest>> =
        serde_saphyr::from_str_multiple_with_options(text, yaml_options())
            .map_err(|e| ManifestError::from_yaml(file_name, &e))?;
    let mut seen = BTreeSet::new();
    let mut specs = Vec::with_capacity(docs.len());
    for doc in &docs {
        let name = doc.value.metadata.name.clone();
        let mut spec = doc
            .value
            .spec
            .to_spec(file_name, name.clone())
            .map_err(|mut e| {
                if e.line == 0 {
                    (e.line, e.column) = (doc.referenced.line(), doc.referenced.column());
                }
                e
            })?;
        spec.labels = checked_labels(file_name, &doc.value.metadata.labels)?;
        if let Some(site) = doc.value.spec.ref_sites(file_name).first() {
            return Err(ManifestError {
                file: file_name.to_owned(),
                line: site.line,
                column: site.column,
                message: format!(
                    "{} references are for the hub's Deployments; a local Workload cannot use them",
                    site.kind.as_str()
                ),
            });
        }
        if !seen.insert(name.clone()) {
            let msg = format!("workload {:?} is defined twice", name.as_str());
            return Err(ManifestError::at(file_name, doc, msg));
        }
        specs.push(spec);
    }
    check_workload_cycle(file_name, &docs, &specs)?;
    Ok(specs)
}

/// A `dependsOn` cycle among the workloads of one file, located at the first one's
/// `dependsOn` (cycles across files are found where all of a device's workloads meet).
fn check_workload_cycle(
    file: &str,
    docs: &[Spanned<WorkloadManifest>],
    specs: &[WorkloadSpec],
) -> Result<(), ManifestError> {
    let Some(cycle) = workload_cycle(specs) else {
        return Ok(());
    };
    let msg = format!("dependsOn forms a cycle: {}", join_cycle(&cycle));
    let doc = docs.iter().find(|d| &d.value.metadata.name == cycle[0]);
    match doc.and_then(|d| d.value.spec.depends_on.first()) {
        Some(node) => Err(ManifestError::at(file, node, msg)),
        None => Err(ManifestError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: msg,
        }),
    }
}

impl WorkloadTemplateSpec {
    /// Checks what types cannot and builds the wire spec. `file` only labels errors.
    /// An error may carry line 0 when serde-saphyr could not locate the node.
    pub fn to_spec(&self, file: &str, name: Name) -> Result<WorkloadSpec, ManifestError> {
        let volumes = self.volume_names(file)?;
        let files = self.file_volumes(file)?;
        if self.containers.value.is_empty() {
            let msg = "a workload needs at least one container";
            return Err(ManifestError::at(file, &self.containers, msg));
        }
        let mut names = BTreeSet::new();
        for c in &self.containers.value {
            if !names.insert(&c.name.value) {
                let msg = format!("container name {:?} is used twice", c.name.value.as_str());
                return Err(ManifestError::at(file, &c.name, msg));
            }
        }
        let mut containers = Vec::with_capacity(self.containers.value.len());
        for c in &self.containers.value {
            containers.push(c.to_spec(file, (&volumes, &files), &names)?);
        }
        self.check_container_cycle(file, &containers)?;
        let depends_on = health::workload_dependencies(file, &name, &self.depends_on)?;
        let grace = self.stop_grace_period.as_ref();
        let stop_grace_ms = match grace {
            None => DEFAULT_STOP_GRACE.0 as u32,
            Some(g) => u32::try_from(g.value.0)
                .map_err(|_| ManifestError::at(file, g, "stopGracePeriod is too long"))?,
        };
        Ok(WorkloadSpec {
            name,
            containers,
            restart_policy: self.restart_policy,
            network: match self.network {
                Network::Host => NetworkMode::Host,
                Network::None => NetworkMode::None,
            },
            volumes: volumes
                .into_iter()
                .filter(|v| !files.contains_key(v))
                .collect(),
            stop_grace_ms,
            labels: BTreeMap::new(),
            depends_on,
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        })
    }

    /// A `dependsOn` cycle among the containers, located at the first one's `dependsOn`.
    fn check_container_cycle(
        &self,
        file: &str,
        containers: &[ContainerSpec],
    ) -> Result<(), ManifestError> {
        let nodes: BTreeMap<&Name, Vec<&Name>> = containers
            .iter()
            .map(|c| (&c.name, c.depends_on.iter().map(|d| &d.name).collect()))
            .collect();
        let Some(cycle) = find_cycle(&nodes) else {
            return Ok(());
        };
        let msg = format!("dependsOn forms a cycle: {}", join_cycle(&cycle));
        let first = self
            .containers
            .value
            .iter()
            .find(|c| &c.name.value == cycle[0]);
        match first.and_then(|c| c.depends_on.first()) {
            Some(node) => Err(ManifestError::at(file, node, msg)),
            None => Err(ManifestError::at(file, &self.containers, msg)),
        }
    }

    fn volume_names(&self, file: &str) -> Result<BTreeSet<Name>, ManifestError> {
        let mut names = BTreeSet::new();
        for v in &self.volumes {
            if !names.insert(v.name.value.clone()) {
                let msg = format!("volume {:?} is declared twice", v.name.value.as_str());
                return Err(ManifestError::at(file, &v.name, msg));
            }
        }
        Ok(names)
    }

    fn file_volumes(&self, file: &str) -> Result<FileVolumes, ManifestError> {
        let mut out = FileVolumes::new();
        for v in self.volumes.iter().filter(|v| v.is_files()) {
            let (source, _) =
                refs::files_volume(file, &v.name, v.secret.as_ref(), v.config_map.as_ref())?;
            out.insert(v.name.value.clone(), source);
        }
        Ok(out)
    }

    /// Every place this template references a Secret or ConfigMap (for the hub's "not
    /// found" errors). Call after [`WorkloadTemplateSpec::to_spec`] succeeded.
    pub fn ref_sites(&self, file: &str) -> Vec<RefSite> {
        let mut sites = Vec::new();
        for v in self.volumes.iter().filter(|v| v.is_files()) {
            if let Ok((_, s)) =
                refs::files_volume(file, &v.name, v.secret.as_ref(), v.config_map.as_ref())
            {
                sites.extend(s);
            }
        }
        for c in &self.containers.value {
            for e in &c.env {
                if let Some(from) = &e.value_from
                    && let Ok((_, site)) = refs::env_ref(file, &e.name.value, from)
                {
                    sites.push(site);
                }
            }
        }
        sites
    }
}

/// Checks `metadata.labels`-style maps. Keys are located at their value: serde-saphyr
/// gives map keys no span.
pub fn checked_labels(
    file: &str,
    labels: &BTreeMap<String, Spanned<String>>,
) -> Result<BTreeMap<String, String>, ManifestError> {
    labels
        .iter()
        .map(|(k, v)| {
            check_label_key(k).map_err(|e| ManifestError::at(file, v, e.to_string()))?;
            check_label_value(&v.value).map_err(|e| ManifestError::at(file, v, e.to_string()))?;
            Ok((k.clone(), v.value.clone()))
        })
        .collect()
}

/// An absolute path without `..` components.
fn is_clean_absolute(path: &str) -> bool {
    path.starts_with('/') && !path.split('/').any(|c| c == "..") && !path.contains('\0')
}

fn check_path(file: &str, node: &Spanned<String>, what: &str) -> Result<(), ManifestError> {
    if is_clean_absolute(&node.value) {
        return Ok(());
    }
    let msg = format!(
        "{what} must be an absolute path without '..', got {:?}",
        node.value
    );
    Err(ManifestError::at(file, node, msg))
}

impl ContainerManifest {
    fn to_spec(
        &self,
        file: &str,
        (volumes, files): (&BTreeSet<Name>, &FileVolumes),
        containers: &BTreeSet<&Name>,
    ) -> Result<ContainerSpec, ManifestError> {
        if let Some(dir) = &self.working_dir {
            check_path(file, dir, "workingDir")?;
        }
        let mut targets = BTreeSet::new();
        let mut mounts = Vec::with_capacity(self.mounts.len());
        for m in &self.mounts {
            if !targets.insert(m.value.mount_path.value.as_str()) {
                let msg = format!("mountPath {:?} is used twice", m.value.mount_path.value);
                return Err(ManifestError::at(file, &m.value.mount_path, msg));
            }
            mounts.push(convert_mount(file, m, volumes, files)?);
        }
        let mut env = Vec::with_capacity(self.env.len());
        let mut env_refs = Vec::new();
        for e in &self.env {
            let plain = convert_env(file, e)?;
            match &e.value_from {
                None => env.push(plain),
                Some(from) if e.value.is_empty() => {
                    env_refs.push(refs::env_ref(file, &plain.name, from)?.0);
                }
                Some(from) => {
                    let msg = "env takes value or valueFrom, not both";
                    return Err(ManifestError::at(file, from, msg));
                }
            }
        }
        Ok(ContainerSpec {
            name: self.name.value.clone(),
            image: self.image.value.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
            env,
            working_dir: self.working_dir.as_ref().map(|d| d.value.clone()),
            mounts,
            resources: self.resources.to_spec(file)?,
            devices: self
                .devices
                .iter()
                .map(|d| convert_device(file, d))
                .collect::<Result<_, _>>()?,
            init: self.init,
            liveness_probe: self.probe(file, &self.liveness_probe, ProbeKind::Liveness)?,
            readiness_probe: self.probe(file, &self.readiness_probe, ProbeKind::Readiness)?,
            startup_probe: self.probe(file, &self.startup_probe, ProbeKind::Startup)?,
            depends_on: health::container_dependencies(
                file,
                &self.name.value,
                &self.depends_on,
                containers,
            )?,
            security: self.security_context.to_spec(file)?,
            env_refs,
        })
    }

    fn probe(
        &self,
        file: &str,
        node: &Option<Spanned<ProbeManifest>>,
        kind: ProbeKind,
    ) -> Result<Option<crate::Probe>, ManifestError> {
        node.as_ref()
            .map(|n| health::probe(file, n, kind))
            .transpose()
    }
}

fn convert_env(file: &str, e: &EnvManifest) -> Result<EnvVar, ManifestError> {
    let name = &e.name.value;
    if name.is_empty() || name.contains(['=', '\0']) {
        let msg = format!("env name must be non-empty without '=', got {name:?}");
        return Err(ManifestError::at(file, &e.name, msg));
    }
    Ok(EnvVar {
        name: name.clone(),
        value: e.value.clone(),
    })
}

fn convert_mount(
    file: &str,
    m: &Spanned<MountManifest>,
    volumes: &BTreeSet<Name>,
    files: &FileVolumes,
) -> Result<Mount, ManifestError> {
    let v = &m.value;
    check_path(file, &v.mount_path, "mountPath")?;
    if let Some(source) = v.volume.as_ref().and_then(|n| files.get(n))
        && v.host_path.is_none()
        && v.tmpfs.is_none()
    {
        return Ok(Mount {
            source: MountSource::Files(source.clone()),
            target: v.mount_path.value.clone(),
            read_only: true,
        });
    }
    let source = match (&v.volume, &v.host_path, v.tmpfs) {
        (Some(vol), None, None) if volumes.contains(vol) => MountSource::Volume(vol.clone()),
        (Some(vol), None, None) => {
            let msg = format!("volume {:?} is not declared in spec.volumes", vol.as_str());
            return Err(ManifestError::at(file, m, msg));
        }
        (None, Some(host), None) if is_clean_absolute(host) => MountSource::HostPath(host.clone()),
        (None, Some(host), None) => {
            let msg = format!("hostPath must be an absolute path without '..', got {host:?}");
            return Err(ManifestError::at(file, m, msg));
        }
        (None, None, Some(size)) if size.0 > 0 => MountSource::Tmpfs { size_bytes: size.0 },
        (None, None, Some(_)) => {
            return Err(ManifestError::at(file, m, "tmpfs size must not be 0"));
        }
        _ => {
            let msg = "a mount needs exactly one of volume, hostPath or tmpfs";
            return Err(ManifestError::at(file, m, msg));
        }
    };
    Ok(Mount {
        source,
        target: v.mount_path.value.clone(),
        read_only: v.read_only,
    })
}

fn convert_device(file: &str, d: &Spanned<DeviceManifest>) -> Result<HostDevice, ManifestError> {
    let (host, container, perms) = match &d.value {
        DeviceManifest::Path(p) => (p, None, None),
        DeviceManifest::Full(m) => (
            &m.host_path,
            m.container_path.as_ref(),
            m.permissions.as_ref(),
        ),
    };
    for p in std::iter::once(host).chain(container) {
        if !p.starts_with("/dev/") || !is_clean_absolute(p) {
            let msg = format!("device path must be an absolute path under /dev, got {p:?}");
            return Err(ManifestError::at(file, d, msg));
        }
    }
    let permissions = perms.map_or("rwm", String::as_str);
    let mut seen = BTreeSet::new();
    if permissions.is_empty()
        || !permissions
            .chars()
            .all(|c| "rwm".contains(c) && seen.insert(c))
    {
        let msg = format!(
            "device permissions must be a non-empty subset of \"rwm\", got {permissions:?}"
        );
        return Err(ManifestError::at(file, d, msg));
    }
    Ok(HostDevice {
        host_path: host.clone(),
        container_path: container.cloned(),
        permissions: permissions.to_owned(),
    })
}

impl ResourcesManifest {
    fn to_spec(&self, file: &str) -> Result<Resources, ManifestError> {
        fn at_least<T: Copy>(
            file: &str,
            v: &Option<Spanned<T>>,
            get: impl Fn(T) -> u64,
            min: u64,
            why: &str,
        ) -> Result<(), ManifestError> {
            match v {
                Some(s) if get(s.value) < min => Err(ManifestError::at(file, s, why.to_owned())),
                _ => Ok(()),
            }
        }
        at_least(
            file,
            &self.memory,
            |b| b.0,
            MIN_MEMORY_BYTES,
            "resources.memory must be at least 6Mi (nothing starts in less; Docker refuses it too)",
        )?;
        at_least(
            file,
            &self.cpu,
            |c| u64::from(c.0),
            MIN_CPU_MILLIS,
            "resources.cpu must be at least 10m: the kernel's smallest CFS quota is 1 ms per 100 ms period",
        )?;
        at_least(
            file,
            &self.pids,
            u64::from,
            1,
            "resources.pids must not be 0",
        )?;
        Ok(Resources {
            memory_bytes: self.memory.as_ref().map(|m| m.value.0),
            cpu_millis: self.cpu.as_ref().map(|c| c.value.0),
            pids: self.pids.as_ref().map(|p| p.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "\
apiVersion: drover.dev/v1
kind: Workload
metadata:
  name: web
  labels: {app: web}
spec:
  restartPolicy: OnFailure
  network: none
  stopGracePeriod: 5s
  volumes: [{name: data}]
  containers:
    - name: main
      image: oci:/var/lib/images/web:1.0
      command: [\"/bin/web\"]
      args: [\"--port\", \"8080\"]
      env: [{name: A, value: b}, {name: PORT, value: 8080}]
      workingDir: /srv
      resources: {memory: 64Mi, cpu: 500m, pids: 64}
      devices: [/dev/i2c-1, {hostPath: /dev/ttyUSB0, containerPath: /dev/ttyS0, permissions: rw}]
      mounts:
        - {volume: data, mountPath: /data}
        - {hostPath: /etc/ssl/certs, mountPath: /etc/ssl/certs, readOnly: true}
        - {tmpfs: 16Mi, mountPath: /tmp}
      init: true
";

    const MINIMAL: &str = "\
apiVersion: drover.dev/v1
kind: Workload
metadata:
  name: web
spec:
  containers:
    - name: main
      image: x
";

    fn err(text: &str) -> String {
        match parse_workloads("web.yaml", text) {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn name(s: &str) -> Name {
        Name::new(s).expect("valid name")
    }

    fn expected_full() -> WorkloadSpec {
        let env = |n: &str, v: &str| EnvVar {
            name: n.into(),
            value: v.into(),
        };
        let mount = |source, target: &str, read_only| Mount {
            source,
            target: target.into(),
            read_only,
        };
        WorkloadSpec {
            name: name("web"),
            restart_policy: RestartPolicy::OnFailure,
            network: NetworkMode::None,
            volumes: vec![name("data")],
            stop_grace_ms: 5000,
            labels: [("app".to_owned(), "web".to_owned())].into(),
            containers: vec![ContainerSpec {
                name: name("main"),
                image: ImageRef::new("oci:/var/lib/images/web:1.0").expect("valid image"),
                command: vec!["/bin/web".into()],
                args: vec!["--port".into(), "8080".into()],
                env: vec![env("A", "b"), env("PORT", "8080")],
                working_dir: Some("/srv".into()),
                mounts: vec![
                    mount(MountSource::Volume(name("data")), "/data", false),
                    mount(
                        MountSource::HostPath("/etc/ssl/certs".into()),
                        "/etc/ssl/certs",
                        true,
                    ),
                    mount(
                        MountSource::Tmpfs {
                            size_bytes: 16 << 20,
                        },
                        "/tmp",
                        false,
                    ),
                ],
                resources: Resources {
                    memory_bytes: Some(64 << 20),
                    cpu_millis: Some(500),
                    pids: Some(64),
                },
                devices: vec![
                    HostDevice {
                        host_path: "/dev/i2c-1".into(),
                        container_path: None,
                        permissions: "rwm".into(),
                    },
                    HostDevice {
                        host_path: "/dev/ttyUSB0".into(),
                        container_path: Some("/dev/ttyS0".into()),
                        permissions: "rw".into(),
                    },
                ],
                init: true,
                liveness_probe: None,
                readiness_probe: None,
                startup_probe: None,
                depends_on: vec![],
                security: Default::default(),
                env_refs: vec![],
            }],
            depends_on: vec![],
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        }
    }

    #[test]
    fn full_example_parses() {
        assert_eq!(parse_workloads("web.yaml", FULL), Ok(vec![expected_full()]));
    }

    #[test]
    fn defaults_apply() {
        let spec = &parse_workloads("web.yaml", MINIMAL).expect("parses")[0];
        assert_eq!(spec.restart_policy, RestartPolicy::Always);
        assert_eq!(spec.network, NetworkMode::Host);
        assert_eq!(spec.stop_grace_ms, 10_000);
        assert_eq!(spec.containers[0].resources, Resources::default());
    }

    #[test]
    fn several_documents() {
        let second = MINIMAL.replace("name: web", "name: db");
        let text = format!("---\n{MINIMAL}---\n{second}---\n");
        let specs = parse_workloads("web.yaml", &text).expect("parses");
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        let twice = format!("{MINIMAL}---\n{MINIMAL}");
        assert_eq!(
            err(&twice),
            "web.yaml:10:1: workload \"web\" is defined twice"
        );
    }

    #[test]
    fn limits_nothing_can_run_under_are_refused_at_their_value() {
        let with = |r: &str| format!("{MINIMAL}      resources: {{{r}}}\n");
        for tiny in ["memory: 1e3", "memory: 5Mi", "memory: 1000"] {
            let e = err(&with(tiny));
            assert!(
                e.starts_with("web.yaml:9:27: resources.memory must be at least 6Mi"),
                "{tiny}: {e}"
            );
        }
        for tiny in ["cpu: 1m", "cpu: 5m", "cpu: 9m"] {
            let e = err(&with(tiny));
            assert!(
                e.starts_with("web.yaml:9:24: resources.cpu must be at least 10m"),
                "{tiny}: {e}"
            );
        }
        assert!(err(&with("pids: 0")).contains("resources.pids must not be 0"));
        let ok = parse_workloads("web.yaml", &with("memory: 6Mi, cpu: 10m, pids: 1")).unwrap();
        let r = &ok[0].containers[0].resources;
        assert_eq!(
            (r.memory_bytes, r.cpu_millis, r.pids),
            (Some(6 << 20), Some(10), Some(1))
        );
    }

    #[test]
    fn type_errors_are_located() {
        let unknown = format!("{MINIMAL}      imagee: y\n");
        assert!(err(&unknown).starts_with("web.yaml:9:7: unknown field `imagee`, expected one of"));
        let size = format!("{MINIMAL}      resources: {{memory: 12Q}}\n");
        assert_eq!(
            err(&size),
            "web.yaml:9:27: expected a size like 64Mi or 128M, got \"12Q\""
        );
        let dup = MINIMAL.replace("  name: web", "  name: web\n  name: b");
        assert_eq!(
            err(&dup),
            "web.yaml:5:3: duplicate mapping key `name` is not allowed here"
        );
        assert!(
            err(&MINIMAL.replace("name: web", "name: Web"))
                .starts_with("web.yaml:4:9: name \"Web\"")
        );
        let kind = err(&MINIMAL.replace("Workload", "Deployment"));
        assert_eq!(
            kind,
            "web.yaml:2:7: unknown variant `Deployment`, expected one of Workload"
        );
        let api = err(&MINIMAL.replace("drover.dev/v1", "v2"));
        assert_eq!(
            api,
            "web.yaml:1:13: unknown variant `v2`, expected one of drover.dev/v1"
        );
        let device = format!("{MINIMAL}      devices: [{{hostPath: /dev/a, bogus: 1}}]\n");
        assert!(err(&device).starts_with("web.yaml:9:36: unknown field `bogus`"));
    }

    #[test]
    fn semantic_errors_are_located() {
        let cases = [
            (
                "      devices: [/dev/a, /tmp/b]\n",
                "9:25: device path must be an absolute path under /dev",
            ),
            (
                "      devices: [{hostPath: /dev/a, permissions: rx}]\n",
                "9:17: device permissions",
            ),
            (
                "      env: [{name: A=B}]\n",
                "9:20: env name must be non-empty",
            ),
            (
                "      workingDir: srv\n",
                "9:19: workingDir must be an absolute path",
            ),
            (
                "      mounts: [{volume: data, mountPath: /d}]\n",
                "9:16: volume \"data\" is not declared",
            ),
            (
                "      mounts: [{tmpfs: 1Mi, mountPath: d}]\n",
                "9:40: mountPath must be an absolute path",
            ),
            (
                "      mounts: [{mountPath: /d}]\n",
                "9:16: a mount needs exactly one of",
            ),
            (
                "      resources: {pids: 0}\n",
                "9:25: resources.pids must not be 0",
            ),
            (
                "    - name: main\n      image: y\n",
                "9:13: container name \"main\" is used twice",
            ),
        ];
        for (extra, want) in cases {
            let got = err(&format!("{MINIMAL}{extra}"));
            assert!(
                got.starts_with(&format!("web.yaml:{want}")),
                "{extra}: {got}"
            );
        }
        let none = MINIMAL.replace("\n    - name: main\n      image: x", " []");
        assert_eq!(
            err(&none),
            "web.yaml:6:15: a workload needs at least one container"
        );
        let empty_image = MINIMAL.replace("image: x", "image: \"\"");
        assert_eq!(err(&empty_image), "web.yaml:8:14: image reference is empty");
    }

    #[test]
    fn image_typos_point_at_the_image() {
        let typo = err(&MINIMAL.replace("image: x", "image: Nginx:1"));
        assert!(
            typo.starts_with("web.yaml:8:14: image \"Nginx:1\": repository \"Nginx\" is not valid"),
            "{typo}"
        );
        let url = err(&MINIMAL.replace("image: x", "image: docker://busybox"));
        assert!(
            url.starts_with("web.yaml:8:14: image \"docker://busybox\" is a URL"),
            "{url}"
        );
        let digest = err(&MINIMAL.replace("image: x", "image: hub:a@sha512:00"));
        assert!(
            digest.starts_with("web.yaml:8:14: ") && digest.contains("only sha256"),
            "{digest}"
        );
    }

    #[test]
    fn workload_labels_are_checked_and_kept() {
        let text = MINIMAL.replace(
            "  name: web\n",
            "  name: web\n  labels: {app: web, example.com/tier: \"1\"}\n",
        );
        let spec = &parse_workloads("web.yaml", &text).expect("parses")[0];
        let want: BTreeMap<String, String> = [("app", "web"), ("example.com/tier", "1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(spec.labels, want);
        let bad_value = MINIMAL.replace("  name: web\n", "  name: web\n  labels: {app: a b}\n");
        assert!(
            err(&bad_value).starts_with("web.yaml:5:17: label value \"a b\""),
            "{}",
            err(&bad_value)
        );
        let bad_key = MINIMAL.replace("  name: web\n", "  name: web\n  labels: {-app: x}\n");
        assert!(
            err(&bad_key).starts_with("web.yaml:5:18: label key \"-app\""),
            "{}",
            err(&bad_key)
        );
        assert!(
            parse_workloads("web.yaml", MINIMAL).expect("parses")[0]
                .labels
                .is_empty()
        );
    }

    #[test]
    fn hostile_input_is_bounded() {
        let aliases = format!("{MINIMAL}      args: [&a x{}]\n", ", *a".repeat(100));
        let alias_err = err(&aliases);
        assert!(alias_err.starts_with("web.yaml:9:"), "{alias_err}");
        assert!(alias_err.contains("alias"), "{alias_err}");
        let docs = err(&"---\n".repeat(20_001));
        assert!(docs.contains("document"), "{docs}");
        let big = format!("# {}\n", "x".repeat(MAX_MANIFEST_BYTES));
        assert!(err(&big).starts_with("web.yaml:1:1: file is larger than"));
    }
}
