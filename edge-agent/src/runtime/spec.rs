//! Builds a container's OCI runtime config (`config.json`) from the image's config and the
//! workload's spec.
//!
//! Everything here is a decision except three host reads the config cannot be right
//! without: `stat` of each host device (major/minor), a check that host-path mounts exist,
//! and nothing else. It must never create, mount or write anything: the caller writes the
//! returned [`Spec`] into the bundle and prepares the folders it names (rootfs, volumes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use drover_protocol::{ContainerSpec, HostDevice, MountSource, NetworkMode, WorkloadSpec};
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, Mount,
    Spec, User,
};

use crate::image::healthcheck::{HealthcheckError, ImageHealthcheck};

mod hardening;
mod resources;
mod user;

pub use hardening::{MASKED_PATHS, READONLY_PATHS};

use resources as res;
pub use user::UserError;

/// `PATH` when neither the image nor the spec sets one (the value runc and Docker use).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runtime-config annotation asking the shim to run a minimal init as PID 1
/// (`ContainerSpec::init`, `docker run --init`); value `"true"`.
pub const INIT_ANNOTATION: &str = "org.drover.init";

/// Runtime-config annotation carrying the container's probes for the shim, as the JSON of
/// [`ContainerProbes`]; absent when the container has none.
pub const PROBES_ANNOTATION: &str = "org.drover.probes";

/// The probes of one container, as the shim runs them (the manifest's, or the image's
/// `HEALTHCHECK` when the manifest sets none).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerProbes {
    pub liveness: Option<drover_protocol::Probe>,
    pub readiness: Option<drover_protocol::Probe>,
    pub startup: Option<drover_protocol::Probe>,
}

impl ContainerProbes {
    pub fn is_empty(&self) -> bool {
        self.liveness.is_none() && self.readiness.is_none() && self.startup.is_none()
    }

    /// The probes a runtime config asks for; `None` when it carries none (or they do not
    /// parse, which only a hand-edited config.json can cause).
    pub fn of(spec: &Spec) -> Option<ContainerProbes> {
        let json = spec.annotations().as_ref()?.get(PROBES_ANNOTATION)?;
        serde_json::from_str(json).ok()
    }
}

/// The parts of an image's config that shape the process (mirrors `image::ImageConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The image's `HEALTHCHECK`: the container's probe when its spec sets none.
    pub healthcheck: Option<Box<ImageHealthcheck>>,
}

/// Everything [`runtime_spec`] needs for one container.
#[derive(Clone, Debug)]
pub struct SpecInput<'a> {
    pub workload: &'a WorkloadSpec,
    pub container: &'a ContainerSpec,
    pub image: &'a ImageProcess,
    /// Absolute path of the container's (overlay) rootfs.
    pub rootfs: &'a Path,
    /// `/{parent}/{wl}/{container}`.
    pub cgroups_path: &'a str,
    /// The workload's persistent netns file; required for [`NetworkMode::None`].
    pub netns: Option<&'a Path>,
    /// `S/volumes/{wl}`: named volume `v` is bind-mounted from `volumes_dir/v`.
    pub volumes_dir: &'a Path,
    pub hostname: &'a str,
    /// Folder holding the container's `hosts`, `hostname` and `resolv.conf`, bind-mounted
    /// on `/etc/…` as Docker does (a mount of the spec on the same target wins).
    pub etc_files: Option<&'a Path>,
    /// Contents of the rootfs's `/etc/passwd` and `/etc/group` (None when absent).
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    /// Whether the host accounts swap (v1 `memory.memsw.*`, v2 `memory.swap.max`): the
    /// swap limit is only set then, or libcgroups fails writing a missing file.
    pub swap_accounting: bool,
    /// Host folders holding the files of each Secret/ConfigMap mount, by mount target
    /// (written before the spec is built, `runtime::files`).
    pub files: &'a [(String, PathBuf)],
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the files for mount {0:?} were not written")]
    FilesMissing(String),
    #[error("container {0}: no command: the image has no entrypoint or cmd and the spec sets none")]
    NoCommand(String),
    #[error("working directory {0:?} must be an absolute path")]
    RelativeWorkingDir(String),
    #[error("mount target {0:?} must be an absolute path")]
    RelativeMountTarget(String),
    #[error("mount of volume {0:?}: the workload declares no such volume")]
    UnknownVolume(String),
    #[error("host path {0:?} to mount does not exist")]
    HostPathMissing(String),
    #[error("host device {path:?}: {reason}")]
    Device { path: String, reason: String },
    #[error("workload uses network mode None but no network namespace path was given")]
    NetnsMissing,
    #[error(transparent)]
    User(#[from] UserError),
    #[error("invalid resource value: {0}")]
    Resource(String),
    #[error("encoding the probes for the shim: {0}")]
    Probes(String),
    #[error(
        "the image's HEALTHCHECK cannot be used ({0}); set a probe in the manifest to replace it"
    )]
    Healthcheck(#[from] HealthcheckError),
    #[error("building the runtime config: {0}")]
    Oci(#[from] OciSpecError),
}

/// The OCI runtime config of one container.
pub fn runtime_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(input.hostname.to_string()));
    spec.set_root(Some(
        oci_spec::runtime::RootBuilder::default()
            .path(input.rootfs)
            .readonly(false)
            .build()?,
    ));
    spec.set_process(Some(process(input)?));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let own = container_mounts(input)?;
    mounts.extend(etc_mounts(input, &own)?);
    mounts.extend(own);
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(namespaces(input)?));
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    let (devices, rules) = devices(input.container)?;
    linux.set_devices(Some(devices));
    linux.set_resources(Some(res::resources(
        &input.container.resources,
        input.swap_accounting,
        rules,
    )?));
    spec.set_linux(Some(linux));
    let mut notes = spec.annotations().clone().unwrap_or_default();
    if input.container.init {
        notes.insert(INIT_ANNOTATION.to_owned(), "true".to_owned());
    }
    let probes = container_probes(input.container, input.image.healthcheck.as_deref())?;
    if !probes.is_empty() {
        let json = serde_json::to_string(&probes).map_err(|e| SpecError::Probes(e.to_string()))?;
        notes.insert(PROBES_ANNOTATION.to_owned(), json);
    }
    spec.set_annotations(Some(notes));
    hardening::linux(&mut spec, &input.container.security)?;
    Ok(spec)
}

/// The probes the shim runs for `c`: the manifest's when it sets any (never mixed with the
/// image's), else the image's `HEALTHCHECK` as a readiness probe — Docker only marks such a
/// container unhealthy and never restarts it.
pub fn container_probes(
    c: &ContainerSpec,
    healthcheck: Option<&ImageHealthcheck>,
) -> Result<ContainerProbes, SpecError> {
    let own = ContainerProbes {
        liveness: c.liveness_probe.clone(),
        readiness: c.readiness_probe.clone(),
        startup: c.startup_probe.clone(),
    };
    if !own.is_empty() {
        return Ok(own);
    }
    let readiness = match healthcheck {
        Some(h) => h.probe()?,
        None => None,
    };
    Ok(ContainerProbes { readiness, ..own })
}

fn process(input: &SpecInput) -> Result<oci_spec::runtime::Process, SpecError> {
    let c = input.container;
    let mut args = if c.command.is_empty() {
        input.image.entrypoint.clone()
    } else {
        c.command.clone()
    };
    // Kubernetes: `command` replaces the entrypoint and drops the image's Cmd; `args`
    // replace the Cmd.
    if !c.args.is_empty() {
        args.extend(c.args.iter().cloned());
    } else if c.command.is_empty() {
        args.extend(input.image.cmd.iter().cloned());
    }
    if args.is_empty() {
        return Err(SpecError::NoCommand(c.name.to_string()));
    }
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir(cwd));
    }
    let user: User = user::resolve(input.image.user.as_deref(), input.passwd, input.group)?;
    let mut p = oci_spec::runtime::Process::default();
    p.set_terminal(Some(false));
    p.set_args(Some(args));
    p.set_env(Some(environment(input)));
    p.set_cwd(PathBuf::from(cwd));
    p.set_user(user);
    hardening::process(&mut p, &c.security)?;
    Ok(p)
}

/// Image env, overridden (in place) and extended by the spec's env; then PATH and HOSTNAME
/// when missing.
fn environment(input: &SpecInput) -> Vec<String> {
    let mut env: Vec<String> = input.image.env.clone();
    let plain = input
        .container
        .env
        .iter()
        .map(|v| (&v.name, v.value.clone()));
    let refs = input
        .container
        .env_refs
        .iter()
        .map(|v| (&v.name, v.value.to_text()));
    for (name, value) in plain.chain(refs) {
        let entry = format!("{name}={value}");
        match env.iter_mut().find(|e| env_key(e) == name) {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!(
            "HOME={}",
            user::home(input.image.user.as_deref(), input.passwd)
        ));
    }
    // The image's HOSTNAME describes the build machine; only the spec may override ours.
    if !input.container.env.iter().any(|v| v.name == "HOSTNAME") {
        let host = format!("HOSTNAME={}", input.hostname);
        match env.iter_mut().find(|e| env_key(e) == "HOSTNAME") {
            Some(slot) => *slot = host,
            None => env.push(host),
        }
    }
    env
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

fn namespaces(input: &SpecInput) -> Result<Vec<LinuxNamespace>, SpecError> {
    let plain = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    let mut out = Vec::with_capacity(5);
    for typ in plain {
        out.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()?,
        );
    }
    if input.workload.network == NetworkMode::None {
        let path = input.netns.ok_or(SpecError::NetnsMissing)?;
        out.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()?,
        );
    }
    Ok(out)
}

fn container_mounts(input: &SpecInput) -> Result<Vec<Mount>, SpecError> {
    let declared: HashSet<&str> = input.workload.volumes.iter().map(|v| v.as_str()).collect();
    let mounts = &input.container.mounts;
    mounts
        .iter()
        .map(|m| container_mount(m, &declared, input.volumes_dir, input.files))
        .collect()
}

fn container_mount(
    m: &drover_protocol::Mount,
    declared: &HashSet<&str>,
    volumes_dir: &Path,
    files: &[(String, PathBuf)],
) -> Result<Mount, SpecError> {
    if !m.target.starts_with('/') {
        return Err(SpecError::RelativeMountTarget(m.target.clone()));
    }
    let rw = if m.read_only { "ro" } else { "rw" };
    let (typ, source, options) = match &m.source {
        MountSource::Volume(name) => {
            if !declared.contains(name.as_str()) {
                return Err(SpecError::UnknownVolume(name.to_string()));
            }
            ("bind", volumes_dir.join(name.as_str()), bind_options(rw))
        }
        MountSource::HostPath(host) => {
            if !Path::new(host).exists() {
                return Err(SpecError::HostPathMissing(host.clone()));
            }
            ("bind", PathBuf::from(host), bind_options(rw))
        }
        MountSource::Tmpfs { size_bytes } => {
            let opts = ["nosuid", "nodev", "mode=1777", rw];
            let mut opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
            opts.push(format!("size={size_bytes}"));
            ("tmpfs", PathBuf::from("tmpfs"), opts)
        }
        MountSource::Files(_) => {
            let Some((_, dir)) = files.iter().find(|(t, _)| *t == m.target) else {
                return Err(SpecError::FilesMissing(m.target.clone()));
            };
            let mut opts = bind_options("ro");
            opts.push("noexec".to_owned());
            ("bind", dir.clone(), opts)
        }
    };
    let b = oci_spec::runtime::MountBuilder::default()
        .destination(&m.target)
        .typ(typ);
    Ok(b.source(source).options(options).build()?)
}

/// Files the runtime provides under `/etc`, as Docker does.
pub const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

fn etc_mounts(input: &SpecInput, own: &[Mount]) -> Result<Vec<Mount>, SpecError> {
    let Some(dir) = input.etc_files else {
        return Ok(Vec::new());
    };
    let mut mounts = Vec::new();
    for name in ETC_FILES {
        let target = format!("/etc/{name}");
        if own.iter().any(|m| m.destination() == Path::new(&target)) {
            continue;
        }
        let m = oci_spec::runtime::MountBuilder::default()
            .destination(target)
            .typ("bind")
            .source(dir.join(name))
            .options(bind_options("rw"))
            .build()?;
        mounts.push(m);
    }
    Ok(mounts)
}

/// Docker's options for bind mounts plus `nosuid,nodev`: a file from the host never
/// makes a process privileged or opens a device.
fn bind_options(rw: &str) -> Vec<String> {
    ["rbind", "rprivate", "nosuid", "nodev", rw]
        .map(str::to_string)
        .to_vec()
}

/// Device nodes to create in the container and the cgroup rules: deny all first (as runc
/// does), then the standard devices, then each host device with its permissions.
fn devices(c: &ContainerSpec) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut nodes = Vec::with_capacity(c.devices.len());
    let mut rules = res::default_device_rules()?;
    for d in &c.devices {
        let (node, rule) = host_device(d)?;
        nodes.push(node);
        rules.push(rule);
    }
    Ok((nodes, rules))
}

/// The node and the allow rule for one host device, from `stat` of the host's node.
fn host_device(d: &HostDevice) -> Result<(LinuxDevice, LinuxDeviceCgroup), SpecError> {
    let err = |reason: String| SpecError::Device {
        path: d.host_path.clone(),
        reason,
    };
    if d.permissions.is_empty() || !d.permissions.chars().all(|ch| "rwm".contains(ch)) {
        let p = &d.permissions;
        return Err(err(format!(
            "permissions {p:?} must be a non-empty subset of \"rwm\""
        )));
    }
    let st = nix::sys::stat::stat(Path::new(&d.host_path))
        .map_err(|e| err(format!("cannot stat the host device: {e}")))?;
    let typ = match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => LinuxDeviceType::C,
        libc::S_IFBLK => LinuxDeviceType::B,
        _ => return Err(err("not a character or block device".to_string())),
    };
    let major = nix::sys::stat::major(st.st_rdev) as i64;
    let minor = nix::sys::stat::minor(st.st_rdev) as i64;
    let target = d
        .container_path
        .clone()
        .unwrap_or_else(|| d.host_path.clone());
    if !target.starts_with('/') {
        return Err(err(format!("container path {target:?} must be absolute")));
    }
    let node = oci_spec::runtime::LinuxDeviceBuilder::default()
        .path(target)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(st.st_mode & 0o7777)
        .uid(st.st_uid)
        .gid(st.st_gid)
        .build()?;
    let rule = res::device_rule(typ, Some(major), Some(minor), &d.permissions)?;
    Ok((node, rule))
}

#[cfg(test)]
mod tests;
