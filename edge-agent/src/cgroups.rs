//! What the agent itself reads and cleans in cgroupfs: the host's cgroup version and
//! controllers, a container's memory use and OOM kills, and removing a workload's cgroups.
//!
//! Limits are never written here: libcontainer/libcgroups apply them from the runtime
//! config. Reads are cheap single-file reads that return `None` rather than fail.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Where cgroupfs is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// v1 reports "no limit" as a page-rounded `i64::MAX`; anything this big is unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy or hybrid (v1 controllers, maybe an empty cgroup2 at `unified`): libcgroups
    /// uses its v1 manager for both.
    V1,
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupsError {
    #[error("cgroup path {0:?} must be a relative path below the Drover parent, without '..'")]
    InvalidPath(String),
    #[error("removing cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("listing cgroup {path}: {source}")]
    List { path: PathBuf, source: io::Error },
}

/// The host's cgroup version, from the filesystem type of [`CGROUP_ROOT`].
pub fn detect() -> CgroupVersion {
    match nix::sys::statfs::statfs(CGROUP_ROOT) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => CgroupVersion::V2,
        _ => CgroupVersion::V1,
    }
}

/// The folder of `rel` for `controller` (`rel` as in `linux.cgroupsPath`, leading `/` optional).
fn dir(version: CgroupVersion, root: &Path, controller: &str, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    match version {
        CgroupVersion::V1 => root.join(controller).join(rel),
        CgroupVersion::V2 => root.join(rel),
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Memory in use and the limit (`None` when unlimited) of a container's cgroup.
pub fn memory_usage(cgroups_path: &str) -> Option<(u64, Option<u64>)> {
    memory_usage_at(detect(), Path::new(CGROUP_ROOT), cgroups_path)
}

pub(crate) fn memory_usage_at(
    version: CgroupVersion,
    root: &Path,
    rel: &str,
) -> Option<(u64, Option<u64>)> {
    let d = dir(version, root, "memory", rel);
    match version {
        CgroupVersion::V1 => {
            let used = read_u64(&d.join("memory.usage_in_bytes"))?;
            let limit = read_u64(&d.join("memory.limit_in_bytes"))?;
            Some((used, (limit < V1_UNLIMITED).then_some(limit)))
        }
        CgroupVersion::V2 => {
            let used = read_u64(&d.join("memory.current"))?;
            let max = fs::read_to_string(d.join("memory.max")).ok()?;
            let max = max.trim();
            let limit = if max == "max" {
                None
            } else {
                Some(max.parse().ok()?)
            };
            Some((used, limit))
        }
    }
}

/// How many times the kernel's OOM killer has killed a process in the cgroup.
pub fn oom_kills(cgroups_path: &str) -> Option<u64> {
    oom_kills_at(detect(), Path::new(CGROUP_ROOT), cgroups_path)
}

pub(crate) fn oom_kills_at(version: CgroupVersion, root: &Path, rel: &str) -> Option<u64> {
    let d = dir(version, root, "memory", rel);
    let file = match version {
        CgroupVersion::V1 => d.join("memory.oom_control"),
        CgroupVersion::V2 => d.join("memory.events"),
    };
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Whether the host accounts swap per cgroup, i.e. whether a swap limit can be written.
/// On v2 this looks for `memory.swap.max` in a top-level cgroup with the memory controller
/// (the root cgroup has none); `false` when it cannot tell.
pub fn swap_accounting() -> bool {
    let root = Path::new(CGROUP_ROOT);
    match detect() {
        CgroupVersion::V1 => root.join("memory/memory.memsw.limit_in_bytes").exists(),
        CgroupVersion::V2 => fs::read_dir(root).is_ok_and(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .any(|p| p.join("memory.current").exists() && p.join("memory.swap.max").exists())
        }),
    }
}

/// Controllers the host offers: v1, the mounted hierarchies below `root` (`cpu,cpuacct`
/// counts for both); v2, the root's `cgroup.controllers`.
pub fn controllers_at(version: CgroupVersion, root: &Path) -> io::Result<BTreeSet<String>> {
    match version {
        CgroupVersion::V2 => {
            let text = fs::read_to_string(root.join("cgroup.controllers"))?;
            Ok(text.split_whitespace().map(str::to_string).collect())
        }
        CgroupVersion::V1 => {
            let mut out = BTreeSet::new();
            for entry in fs::read_dir(root)?.flatten() {
                if !entry.path().join("cgroup.procs").exists() {
                    continue; // an empty folder, not a mounted hierarchy
                }
                let name = entry.file_name().to_string_lossy().to_string();
                out.extend(name.split(',').map(str::to_string));
            }
            Ok(out)
        }
    }
}

/// Mount points of every cgroup hierarchy (v1 controllers, named ones, cgroup2).
fn hierarchies() -> Vec<PathBuf> {
    match fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => hierarchies_in(&text),
        Err(_) => vec![PathBuf::from(CGROUP_ROOT)],
    }
}

fn hierarchies_in(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let point = left.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// Checks that `rel` names something strictly below a hierarchy's root.
fn checked(rel: &str) -> Result<&str, CgroupsError> {
    let trimmed = rel.trim_matches('/');
    let ok = !trimmed.is_empty()
        && Path::new(trimmed)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(trimmed)
    } else {
        Err(CgroupsError::InvalidPath(rel.to_string()))
    }
}

/// Removes the cgroup `rel` (e.g. `/drover/web`) and every cgroup below it, in every
/// hierarchy. Missing folders are fine; a cgroup that still holds processes is an error
/// (EBUSY) — the other hierarchies are still cleaned.
pub fn remove_tree(rel: &str) -> Result<(), CgroupsError> {
    let rel = checked(rel)?;
    let mut first_err = None;
    for h in hierarchies() {
        if let Err(e) = remove_dir_tree(&h.join(rel)) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// rmdir bottom-up; cgroupfs folders hold only pseudo-files, removed with the folder.
fn remove_dir_tree(path: &Path) -> Result<(), CgroupsError> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupsError::List {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dir_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CgroupsError::Remove {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Whether `rel` exists in any hierarchy.
pub fn exists(rel: &str) -> bool {
    let rel = rel.trim_matches('/');
    !rel.is_empty() && hierarchies().iter().any(|h| h.join(rel).is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    #[test]
    fn reads_memory_and_oom_kills_on_v1_and_v2() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let v1 = r.join("memory/drover/web/main");
        write(&v1.join("memory.usage_in_bytes"), "4096\n");
        write(&v1.join("memory.limit_in_bytes"), "9223372036854771712\n");
        write(
            &v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        );
        assert_eq!(
            memory_usage_at(CgroupVersion::V1, r, "/drover/web/main"),
            Some((4096, None))
        );
        write(&v1.join("memory.limit_in_bytes"), "67108864\n");
        let used = memory_usage_at(CgroupVersion::V1, r, "/drover/web/main");
        assert_eq!(used, Some((4096, Some(64 << 20))));
        assert_eq!(
            oom_kills_at(CgroupVersion::V1, r, "/drover/web/main"),
            Some(3)
        );

        let v2 = r.join("drover/web/main");
        write(&v2.join("memory.current"), "8192\n");
        write(&v2.join("memory.max"), "max\n");
        write(
            &v2.join("memory.events"),
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        );
        assert_eq!(
            memory_usage_at(CgroupVersion::V2, r, "/drover/web/main"),
            Some((8192, None))
        );
        assert_eq!(
            oom_kills_at(CgroupVersion::V2, r, "drover/web/main"),
            Some(1)
        );
        assert_eq!(memory_usage_at(CgroupVersion::V2, r, "/drover/none"), None);
    }

    #[test]
    fn finds_hierarchies_and_controllers() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let found = hierarchies_in(info);
        assert_eq!(
            found,
            [
                PathBuf::from("/sys/fs/cgroup/cpu"),
                "/sys/fs/cgroup/unified".into()
            ]
        );

        let root = tempfile::tempdir().expect("tempdir");
        write(&root.path().join("cpu,cpuacct/cgroup.procs"), "");
        write(&root.path().join("pids/cgroup.procs"), "");
        fs::create_dir_all(root.path().join("memory")).expect("empty memory folder");
        let v1 = controllers_at(CgroupVersion::V1, root.path()).expect("v1");
        let v1: Vec<&str> = v1.iter().map(String::as_str).collect();
        assert_eq!(v1, ["cpu", "cpuacct", "pids"]);
        write(
            &root.path().join("cgroup.controllers"),
            "cpuset cpu io pids\n",
        );
        let v2 = controllers_at(CgroupVersion::V2, root.path()).expect("v2");
        assert!(v2.contains("cpu") && !v2.contains("memory"));
    }

    #[test]
    fn rejects_paths_outside_the_parent() {
        for bad in ["", "/", "../x", "/drover/../../etc"] {
            assert!(
                matches!(remove_tree(bad), Err(CgroupsError::InvalidPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn removes_a_workload_tree_in_every_hierarchy() {
        if !crate::testing::require_root("removes_a_workload_tree_in_every_hierarchy") {
            return;
        }
        if detect() != CgroupVersion::V1 {
            eprintln!("not applicable: this test covers cgroup v1 hierarchies");
            return;
        }
        let parent = format!("drover-test-cg{}", std::process::id());
        let root = Path::new(CGROUP_ROOT);
        for ctrl in ["memory", "cpu", "pids"] {
            fs::create_dir_all(root.join(ctrl).join(&parent).join("web/main")).expect("mkdir");
        }
        fs::create_dir_all(root.join("memory").join(&parent).join("other")).expect("mkdir");
        let wl = format!("/{parent}/web");
        assert!(exists(&wl));
        remove_tree(&wl).expect("remove");
        assert!(!exists(&wl));
        assert!(exists(&format!("/{parent}/other")));
        remove_tree(&wl).expect("removing again is fine");
        remove_tree(&parent).expect("cleanup");
        assert!(!exists(&parent));
    }
}
