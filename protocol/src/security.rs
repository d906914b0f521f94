//! A container's security settings (Kubernetes' `securityContext`) and the allow-list
//! policy that decides which host paths, devices and `privileged` a workload may use.
//!
//! The policy check is pure and shared: the hub runs it at `apply` (its `[policy]`), the
//! agent before every start (its `[security]`, the last word, plus paths no config can
//! allow). This module must never do IO: the agent resolves symlinks before asking.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{MountSource, Name, WorkloadSpec};

/// Linux capability names as written in manifests (without `CAP_`), in kernel order.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities a container gets when its manifest changes none: Docker's default set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// One container's `securityContext`. Since envelope version 4.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    /// Overrides the image's user (uid).
    pub run_as_user: Option<u32>,
    /// Overrides the image's group (gid).
    pub run_as_group: Option<u32>,
    pub read_only_root_filesystem: bool,
    /// All capabilities, no seccomp, no masked paths; only where both policies allow it.
    pub privileged: bool,
    /// Capability names from [`CAPABILITIES`] (or `ALL`), added to the defaults.
    pub cap_add: Vec<String>,
    /// Capability names (or `ALL`) removed from the defaults; a name also in `cap_add`
    /// stays (drop first, then add, as Kubernetes does).
    pub cap_drop: Vec<String>,
}

/// The capability name `raw` stands for (`net_admin`, `CAP_NET_ADMIN` → `NET_ADMIN`;
/// `ALL`), or `None` when it names none.
pub fn capability_name(raw: &str) -> Option<String> {
    let upper = raw.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    (bare == "ALL" || CAPABILITIES.contains(&bare)).then(|| bare.to_owned())
}

impl SecurityContext {
    /// The container's capabilities (names from [`CAPABILITIES`], kernel order): all when
    /// privileged; else the defaults minus `cap_drop`, plus `cap_add`.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let has = |list: &[String], c: &str| list.iter().any(|n| n == "ALL" || n == c);
        CAPABILITIES
            .iter()
            .copied()
            .filter(|c| {
                self.privileged
                    || has(&self.cap_add, c)
                    || (DEFAULT_CAPABILITIES.contains(c) && !has(&self.cap_drop, c))
            })
            .collect()
    }
}

/// Which host paths, devices and `privileged` workloads may use: the agent's `[security]`
/// and the hub's `[policy]`. Empty lists allow none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityPolicy {
    /// Absolute folders (or files) a `hostPath` mount may be, or be below.
    #[serde(deserialize_with = "absolute_paths")]
    pub host_paths: Vec<String>,
    /// Host device nodes a container may be given; a trailing `*` matches any suffix
    /// (`/dev/ttyUSB*`).
    #[serde(deserialize_with = "absolute_paths")]
    pub devices: Vec<String>,
    /// Whether `securityContext.privileged: true` may run.
    pub allow_privileged: bool,
    /// Capabilities a container may add beyond Docker's default set
    /// ([`DEFAULT_CAPABILITIES`]), as Kubernetes' `allowedCapabilities`: names from
    /// [`CAPABILITIES`] (`NET_ADMIN`, `CAP_NET_ADMIN` or `net_admin`) or `ALL`. Empty: none
    /// (`SYS_ADMIN`, `SYS_PTRACE`, `SYS_MODULE`… would give a container the host).
    #[serde(deserialize_with = "capability_names")]
    pub allowed_capabilities: Vec<String>,
}

/// What a workload asked for that a policy does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("container {container}: {what}")]
pub struct PolicyViolation {
    pub container: Name,
    pub what: String,
}

impl SecurityPolicy {
    /// Checks every container of `spec` (and of its fallback). `never` are paths no
    /// hostPath may be, be below or be a parent of, whatever the allow-list says (`/` is
    /// always among them); `resolve` maps a host path to what it really names (the
    /// agent: symlinks resolved; the hub: itself) and both are checked.
    pub fn check(
        &self,
        spec: &WorkloadSpec,
        never: &[&Path],
        resolve: &dyn Fn(&str) -> String,
    ) -> Result<(), PolicyViolation> {
        for c in &spec.containers {
            let fail = |what: String| PolicyViolation {
                container: c.name.clone(),
                what,
            };
            if c.security.privileged && !self.allow_privileged {
                return Err(fail(
                    "privileged is not allowed (allow_privileged = false)".into(),
                ));
            }
            if !c.security.privileged {
                self.check_capabilities(&c.security).map_err(fail)?;
            }
            for m in &c.mounts {
                if let MountSource::HostPath(host) = &m.source {
                    for path in [host.clone(), resolve(host)] {
                        self.check_host_path(&path, never).map_err(|why| {
                            fail(format!("hostPath {host:?} (mountPath {}): {why}", m.target))
                        })?;
                    }
                }
            }
            for d in &c.devices {
                for path in [d.host_path.clone(), resolve(&d.host_path)] {
                    if !self.devices.iter().any(|p| device_matches(p, &path)) {
                        let host = &d.host_path;
                        return Err(fail(format!(
                            "device {host:?} is not in the allowed devices"
                        )));
                    }
                }
            }
        }
        match &spec.fallback {
            Some(f) => self.check(f, never, resolve),
            None => Ok(()),
        }
    }

    /// Every capability beyond Docker's default set must be in `allowed_capabilities`.
    fn check_capabilities(&self, sec: &SecurityContext) -> Result<(), String> {
        let allowed = |c: &str| {
            self.allowed_capabilities
                .iter()
                .any(|a| a == "ALL" || a == c)
        };
        let extra: Vec<&str> = sec
            .capabilities()
            .into_iter()
            .filter(|c| !DEFAULT_CAPABILITIES.contains(c) && !allowed(c))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        Err(format!(
            "capabilities {} are beyond Docker's default set and not in allowed_capabilities",
            extra.join(", ")
        ))
    }

    fn check_host_path(&self, path: &str, never: &[&Path]) -> Result<(), String> {
        let p = Path::new(path);
        if !p.is_absolute() || path.split('/').any(|s| s == "..") {
            return Err("must be an absolute path without '..'".into());
        }
        if p == Path::new("/") {
            return Err("/ is never allowed".into());
        }
        // A parent of a forbidden path exposes it as much as the path itself.
        let mut never = never.iter().filter(|n| **n != Path::new("/"));
        if let Some(n) = never.find(|n| n.starts_with(p) || p.starts_with(n)) {
            return Err(format!("{} is never allowed", n.display()));
        }
        if !self.host_paths.iter().any(|a| p.starts_with(a)) {
            return Err("not below any allowed host path".into());
        }
        Ok(())
    }
}

/// A config's list of paths: each absolute, without `..` (a relative one would allow
/// something else than meant).
fn absolute_paths<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if let Some(bad) = list
        .iter()
        .find(|p| !p.starts_with('/') || p.split('/').any(|s| s == ".."))
    {
        return Err(serde::de::Error::custom(format!(
            "expected absolute paths without '..', got {bad:?}"
        )));
    }
    Ok(list)
}

/// A config's list of capability names, normalised (`cap_net_admin` → `NET_ADMIN`); an
/// unknown name is an error.
fn capability_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|raw| {
            capability_name(raw).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown capability {raw:?} (expected a name like NET_ADMIN, or ALL)"
                ))
            })
        })
        .collect()
}

fn device_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
