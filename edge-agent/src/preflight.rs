//! Start-up checks of the host: cgroup version and controllers, a writable state folder,
//! overlayfs. Fatal problems are errors that say how to fix them; the rest are warnings.
//!
//! It must never change the host beyond creating the state folder and a probe file in it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use drover_protocol::Resources;

use crate::cgroups::{self, CgroupVersion};

/// Fix for Raspberry Pi OS, which boots with the memory controller disabled.
pub const MEMORY_FIX: &str = "on Raspberry Pi OS add `cgroup_enable=memory cgroup_memory=1` to \
     the single line of /boot/firmware/cmdline.txt (older images: /boot/cmdline.txt) and reboot";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightReport {
    pub cgroup_version: CgroupVersion,
    /// Controllers the host offers (`memory` is always among them when the check passed).
    pub controllers: BTreeSet<String>,
    /// Whether swap limits can be set (see `cgroups::swap_accounting`).
    pub swap_accounting: bool,
    /// Problems that do not stop the agent, each a full sentence.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "the cgroup memory controller is not enabled ({version:?}), so memory limits cannot \
             be enforced: {MEMORY_FIX}"
    )]
    NoMemoryController { version: CgroupVersion },
    #[error("cannot read the cgroup controllers under {root}: {source}")]
    Controllers { root: PathBuf, source: io::Error },
    #[error("state folder {path} is not usable ({what}): {source}")]
    StateDir {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "the kernel has no overlay filesystem (not in /proc/filesystems): load it with \
             `modprobe overlay` or use a kernel with CONFIG_OVERLAY_FS"
    )]
    NoOverlay,
    #[error("cannot read /proc/filesystems: {0}")]
    Filesystems(io::Error),
}

/// Runs every check against the real host.
pub fn check(state_dir: &Path) -> Result<PreflightReport, PreflightError> {
    let version = cgroups::detect();
    let (controllers, mut warnings) = check_controllers(version, Path::new(cgroups::CGROUP_ROOT))?;
    if let Some(w) = check_state_dir(state_dir)? {
        warnings.push(w);
    }
    let filesystems =
        fs::read_to_string("/proc/filesystems").map_err(PreflightError::Filesystems)?;
    check_overlay(&filesystems)?;
    let swap_accounting = cgroups::swap_accounting();
    if !swap_accounting {
        warnings.push(
            "swap is not accounted per cgroup: a container over its memory limit may swap \
             instead of being OOM-killed if the host has swap"
                .to_string(),
        );
    }
    Ok(PreflightReport {
        cgroup_version: version,
        controllers,
        swap_accounting,
        warnings,
    })
}

/// The controllers under `root` (the cgroup mount root), an error without `memory` and
/// warnings for the other missing ones.
pub(crate) fn check_controllers(
    version: CgroupVersion,
    root: &Path,
) -> Result<(BTreeSet<String>, Vec<String>), PreflightError> {
    let controllers =
        cgroups::controllers_at(version, root).map_err(|source| PreflightError::Controllers {
            root: root.to_path_buf(),
            source,
        })?;
    if !controllers.contains("memory") {
        return Err(PreflightError::NoMemoryController { version });
    }
    let mut warnings = Vec::new();
    for (ctrl, what) in [("cpu", "CPU"), ("pids", "pids")] {
        if !controllers.contains(ctrl) {
            warnings.push(format!(
                "the cgroup {ctrl} controller is not available: {what} limits will not be enforced"
            ));
        }
    }
    if version == CgroupVersion::V1 && !controllers.contains("devices") {
        warnings.push(
            "the cgroup devices controller is not mounted: device allow-lists will not be \
             enforced"
                .to_string(),
        );
    }
    if version == CgroupVersion::V2 {
        warnings.push(
            "cgroup v2: device allow-lists are not enforced (libcontainer is built without \
             its eBPF `cgroupsv2_devices` feature)"
                .to_string(),
        );
    }
    Ok((controllers, warnings))
}

/// Creates the state folder if needed (0700; an existing one open to others is tightened,
/// and the log says so) and proves it writable with a probe file, which is
/// always removed. A full disk is a warning, not a failure: the agent must start, keep
/// running what runs and report low disk.
fn check_state_dir(dir: &Path) -> Result<Option<String>, PreflightError> {
    let fail = |what: &'static str| {
        move |source| PreflightError::StateDir {
            path: dir.to_path_buf(),
            what,
            source,
        }
    };
    let tightened = crate::fsutil::ensure_private_dir(dir).map_err(fail("cannot create it"))?;
    if let Some(was) = tightened {
        let was = format!("{was:o}");
        tracing::warn!(folder = %dir.display(), was, "tightened the mode of the state folder to 0700");
    }
    let probe = dir.join(format!(".preflight-{}", std::process::id()));
    let written = fs::write(&probe, b"probe");
    let removed = fs::remove_file(&probe);
    match written {
        Err(e) if is_disk_full(&e) => {
            return Ok(Some(format!(
                "the state folder {} is on a full disk: workloads keep running, but nothing can be recorded until space is freed",
                dir.display()
            )));
        }
        Err(e) => return Err(fail("cannot write in it")(e)),
        Ok(()) => {}
    }
    removed.map_err(fail("cannot remove a file in it"))?;
    Ok(None)
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn check_overlay(filesystems: &str) -> Result<(), PreflightError> {
    let found = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    if found {
        Ok(())
    } else {
        Err(PreflightError::NoOverlay)
    }
}

impl PreflightReport {
    /// Why a container with these limits cannot be run as asked on this host, if it cannot:
    /// a limit needs a controller the host does not offer.
    pub fn unsupported(&self, r: &Resources) -> Option<String> {
        let needs = [
            (r.memory_bytes.is_some(), "memory", "a memory limit"),
            (r.cpu_millis.is_some(), "cpu", "a CPU limit"),
            (r.pids.is_some(), "pids", "a pids limit"),
        ];
        needs.iter().find(|(set, ctrl, _)| *set && !self.controllers.contains(*ctrl)).map(
            |(_, ctrl, what)| {
                format!("the container sets {what} but the host's cgroup {ctrl} controller is not available")
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_memory_controller_says_how_to_fix_it() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io pids\n",
        )
        .expect("write");
        let err = check_controllers(CgroupVersion::V2, root.path()).expect_err("no memory");
        let text = err.to_string();
        assert!(
            text.contains("cgroup_enable=memory cgroup_memory=1"),
            "{text}"
        );
        assert!(text.contains("/boot/firmware/cmdline.txt"), "{text}");
        assert!(text.contains("/boot/cmdline.txt"), "{text}");
    }

    #[test]
    fn missing_cpu_and_pids_are_warnings() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::write(root.path().join("cgroup.controllers"), "memory io\n").expect("write");
        let (ctrls, warnings) = check_controllers(CgroupVersion::V2, root.path()).expect("ok");
        assert!(warnings.iter().any(|w| w.contains("cpu controller")));
        assert!(warnings.iter().any(|w| w.contains("pids controller")));
        let report = PreflightReport {
            cgroup_version: CgroupVersion::V2,
            controllers: ctrls,
            swap_accounting: false,
            warnings,
        };
        let cpu = Resources {
            cpu_millis: Some(500),
            ..Resources::default()
        };
        assert!(
            report
                .unsupported(&cpu)
                .expect("cpu missing")
                .contains("CPU limit")
        );
        let mem = Resources {
            memory_bytes: Some(1 << 20),
            ..Resources::default()
        };
        assert_eq!(report.unsupported(&mem), None);
    }

    #[test]
    fn overlay_and_state_dir_checks() {
        assert!(check_overlay("nodev\tsysfs\nnodev\toverlay\n").is_ok());
        assert!(matches!(
            check_overlay("nodev\tsysfs\n"),
            Err(PreflightError::NoOverlay)
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("a/b");
        assert_eq!(
            check_state_dir(&state).expect("creatable and writable"),
            None
        );
        assert_eq!(
            fs::read_dir(&state).unwrap().count(),
            0,
            "no probe left behind"
        );
        assert_eq!(fs::read_dir(&state).expect("list").count(), 0);
        let file = dir.path().join("file");
        fs::write(&file, "").expect("write");
        assert!(check_state_dir(&file.join("sub")).is_err());
    }

    #[test]
    fn this_host_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = check(dir.path()).expect("preflight on the build host");
        assert!(report.controllers.contains("memory"));
    }
}
