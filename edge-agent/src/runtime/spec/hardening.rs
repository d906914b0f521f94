//! The confinement every container gets unless it is privileged, Docker's defaults or
//! stricter: its capability set (none ambient or inheritable), `noNewPrivileges`, the
//! default seccomp profile, masked and read-only `/proc` and `/sys` paths, `/sys`
//! read-only, `nosuid,noexec,nodev` on `/proc`. Plus the `securityContext` of the
//! manifest: read-only root, user and group.
//!
//! Pure except for one read, the kernel release (for the seccomp profile's ptrace rule).
//! It must never grant more than the container's `SecurityContext` asks for: whether it
//! may ask is the policy's business, checked before the spec is built.

use std::str::FromStr;
use std::sync::OnceLock;

use drover_protocol::SecurityContext;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilitiesBuilder, Mount, Process, Spec, User,
};

use crate::runtime::seccomp;

/// Masked (bind-mounted over with nothing) unless privileged: Docker's list.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Read-only unless privileged: Docker's list.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Capabilities, no-new-privileges, user and group of the process.
pub fn process(p: &mut Process, ctx: &SecurityContext) -> Result<(), OciSpecError> {
    let mut user: User = p.user().clone();
    if let Some(uid) = ctx.run_as_user {
        user.set_uid(uid);
        if ctx.run_as_group.is_none() {
            // Kubernetes keeps the image's group; the image's supplementary groups
            // belong to its user, not to this one.
            user.set_additional_gids(None);
        }
    }
    if let Some(gid) = ctx.run_as_group {
        user.set_gid(gid);
        user.set_additional_gids(None);
    }
    let own = own_bounding_set();
    let caps: Capabilities = ctx
        .capabilities()
        .iter()
        // As Docker: privileged means every capability this process may pass on.
        .filter(|c| !ctx.privileged || own.is_none_or(|set| set.contains(c)))
        .filter_map(|c| Capability::from_str(c).ok())
        .collect();
    // As Docker: a non-root process starts with no effective or permitted capabilities;
    // the bounding set still limits what a setuid binary could get.
    let held = if user.uid() == 0 {
        caps.clone()
    } else {
        Capabilities::new()
    };
    let none = Capabilities::new();
    p.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(caps)
            .effective(held.clone())
            .permitted(held)
            .inheritable(none.clone())
            .ambient(none)
            .build()?,
    ));
    // A privileged container may need setuid binaries; everything else may not gain any.
    p.set_no_new_privileges(Some(!ctx.privileged));
    p.set_user(user);
    Ok(())
}

/// Seccomp, masked and read-only paths, `/proc` and `/sys` options, read-only root.
pub fn linux(spec: &mut Spec, ctx: &SecurityContext) -> Result<(), OciSpecError> {
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(ctx.read_only_root_filesystem));
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    if ctx.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        linux.set_seccomp(None);
    } else {
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        linux.set_masked_paths(Some(own(&MASKED_PATHS)));
        let mut readonly: Vec<String> = own(&READONLY_PATHS);
        readonly.extend(cgroup_paths().iter().cloned());
        linux.set_readonly_paths(Some(readonly));
        let caps = ctx.capabilities();
        linux.set_seccomp(Some(seccomp::default_profile(&caps, kernel_4_8())?));
    }
    spec.set_linux(Some(linux));
    let mounts = spec.mounts().clone().unwrap_or_default();
    spec.set_mounts(Some(mounts.into_iter().map(system_mount).collect()));
    Ok(())
}

/// `/sys/fs/cgroup` and, on cgroup v1, each hierarchy below it (read once from this
/// host's mountinfo): read-only in the container like Docker's. The spec's `ro` on the
/// cgroup mount is not enough: libcontainer 0.7 mounts each v1 hierarchy read-write
/// (a bind of the container's own cgroup), and a container could then raise its own
/// memory, pids and cpu limits, or create cgroups in the `name=systemd` hierarchy.
/// Paths absent in the container are skipped by libcontainer.
fn cgroup_paths() -> &'static [String] {
    static PATHS: OnceLock<Vec<String>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut paths = vec![CGROUP_ROOT.to_owned()];
        let hierarchies = libcgroups::v1::util::list_subsystem_mount_points().unwrap_or_default();
        paths.extend(cgroup_hierarchies(&hierarchies));
        paths
    })
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The v1 hierarchies' mount points directly below `/sys/fs/cgroup`, sorted (`cpu` and
/// `cpuacct` are symlinks to `cpu,cpuacct` on most hosts: only real mount points count).
pub fn cgroup_hierarchies(mounts: &[std::path::PathBuf]) -> Vec<String> {
    let root = std::path::Path::new(CGROUP_ROOT);
    let mut out: Vec<String> = mounts
        .iter()
        .filter(|m| m.parent() == Some(root))
        .map(|m| m.to_string_lossy().into_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `/proc` gets `nosuid,noexec,nodev`. `/sys` stays read-only, privileged too (a
/// read-write sysfs needs the host's network namespace rules; not needed so far).
fn system_mount(mut m: Mount) -> Mount {
    let dest = m.destination().to_string_lossy().into_owned();
    let mut opts = m.options().clone().unwrap_or_default();
    if dest != "/proc" {
        return m;
    }
    for o in ["nosuid", "noexec", "nodev"] {
        if !opts.iter().any(|x| x == o) {
            opts.push(o.to_owned());
        }
    }
    m.set_options(Some(opts));
    m
}

/// The capability names in this process's bounding set (read once; `None` when
/// `/proc/self/status` cannot be read).
fn own_bounding_set() -> Option<&'static [&'static str]> {
    static SET: OnceLock<Option<Vec<&'static str>>> = OnceLock::new();
    SET.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
        let bits = u64::from_str_radix(hex.trim(), 16).ok()?;
        let names = drover_protocol::security::CAPABILITIES.iter().enumerate();
        Some(
            names
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, n)| *n)
                .collect(),
        )
    })
    .as_deref()
}

/// Whether the running kernel is at least 4.8 (read once; assumed when unreadable, as
/// every board Drover supports runs a newer one).
fn kernel_4_8() -> bool {
    static AT_LEAST: OnceLock<bool> = OnceLock::new();
    *AT_LEAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or(true, |release| release_at_least(release.trim(), (4, 8)))
    })
}

/// `6.1.0-rpi7` ≥ (4, 8)?
pub fn release_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}
