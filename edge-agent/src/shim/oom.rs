//! Reads how many times the kernel OOM-killed inside a container's memory cgroup.
//!
//! A small private reader (the general `crate::cgroups` module is written in parallel):
//! cgroup v1 `memory/<path>/memory.oom_control`, v2 `<path>/memory.events`, both with a
//! line `oom_kill N`. It must be read before the container is deleted (deleting removes
//! the cgroup). It only reads; it never writes to a cgroup.

use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The container's `linux.cgroupsPath` from the bundle's `config.json`.
pub fn cgroups_path(bundle: &Path) -> Option<PathBuf> {
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    spec.linux().as_ref()?.cgroups_path().clone()
}

/// OOM kills recorded in the memory cgroup at `cgroups_path`; `None` if unreadable.
pub fn oom_kill_count(cgroups_path: &Path) -> Option<u64> {
    oom_kill_count_in(Path::new(CGROUP_ROOT), cgroups_path)
}

fn oom_kill_count_in(root: &Path, cgroups_path: &Path) -> Option<u64> {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let file = if root.join("cgroup.controllers").exists() {
        root.join(rel).join("memory.events")
    } else {
        root.join("memory").join(rel).join("memory.oom_control")
    };
    parse_oom_kill(&std::fs::read_to_string(file).ok()?)
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_files() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn picks_the_layout_of_the_host() {
        let v1 = tempfile::tempdir().unwrap();
        let d = v1.path().join("memory/drover/wl/main");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("memory.oom_control"), "oom_kill 2\n").unwrap();
        assert_eq!(
            oom_kill_count_in(v1.path(), Path::new("/drover/wl/main")),
            Some(2)
        );

        let v2 = tempfile::tempdir().unwrap();
        let d = v2.path().join("drover/wl/main");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "memory\n").unwrap();
        std::fs::write(d.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(
            oom_kill_count_in(v2.path(), Path::new("/drover/wl/main")),
            Some(1)
        );
    }
}
