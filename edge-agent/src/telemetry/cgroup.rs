//! Reads one container's usage from its cgroup, on cgroup v1 and v2: CPU time, memory
//! now and at its peak, processes, OOM kills.
//!
//! Five small file reads per container rather than libcgroups' `Manager::stats()`: on v1
//! that parses mountinfo for every controller when the manager is made, reads blkio,
//! hugetlb and kernel-memory files nobody sends, and fails as a whole where a host lacks
//! one of them (`memory.memsw.*` without swap accounting, as on Raspberry Pi OS;
//! `memory.kmem.*` on recent kernels). Reads never fail: a cgroup whose memory
//! usage cannot be read is absent (`None`), other missing files read as 0.

use std::fs;
use std::path::{Path, PathBuf};

use super::units::RawCgroup;
use crate::cgroups::{self, CGROUP_ROOT, CgroupVersion};

/// Where the container cgroups are: the host's cgroupfs, or a fake tree in tests.
#[derive(Clone, Debug)]
pub struct CgroupReader {
    version: CgroupVersion,
    root: PathBuf,
}

impl CgroupReader {
    /// The host's cgroupfs at [`CGROUP_ROOT`], its version detected once.
    pub fn host() -> Self {
        CgroupReader {
            version: cgroups::detect(),
            root: PathBuf::from(CGROUP_ROOT),
        }
    }

    pub fn at(version: CgroupVersion, root: &Path) -> Self {
        CgroupReader {
            version,
            root: root.to_path_buf(),
        }
    }

    /// The usage of cgroup `rel` (as in `linux.cgroupsPath`); `None` when it has no
    /// readable memory usage (not created yet, or already removed).
    pub fn read(&self, rel: &str) -> Option<RawCgroup> {
        let rel = rel.trim_start_matches('/');
        match self.version {
            CgroupVersion::V1 => self.read_v1(rel),
            CgroupVersion::V2 => self.read_v2(rel),
        }
    }

    fn read_v1(&self, rel: &str) -> Option<RawCgroup> {
        let at = |ctrl: &str, file: &str| self.root.join(ctrl).join(rel).join(file);
        Some(RawCgroup {
            memory_bytes: read_u64(&at("memory", "memory.usage_in_bytes"))?,
            memory_peak_bytes: read_u64(&at("memory", "memory.max_usage_in_bytes")),
            cpu_ns: read_u64(&at("cpuacct", "cpuacct.usage")).unwrap_or(0),
            pids: read_u64(&at("pids", "pids.current")).unwrap_or(0),
            oom_kills: self.oom_kills(rel),
        })
    }

    fn read_v2(&self, rel: &str) -> Option<RawCgroup> {
        let dir = self.root.join(rel);
        let cpu_us = fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|t| keyed(&t, "usage_usec"));
        Some(RawCgroup {
            memory_bytes: read_u64(&dir.join("memory.current"))?,
            memory_peak_bytes: read_u64(&dir.join("memory.peak")),
            cpu_ns: cpu_us.unwrap_or(0).saturating_mul(1000),
            pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
            oom_kills: self.oom_kills(rel),
        })
    }

    fn oom_kills(&self, rel: &str) -> u64 {
        cgroups::oom_kills_at(self.version, &self.root, rel).unwrap_or(0)
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`usage_usec 1234` lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_a_v1_container() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let rel = "drover/web/main";
        write(
            &r.join("memory").join(rel).join("memory.usage_in_bytes"),
            "4096\n",
        );
        write(
            &r.join("memory").join(rel).join("memory.max_usage_in_bytes"),
            "8192\n",
        );
        write(
            &r.join("memory").join(rel).join("memory.oom_control"),
            "oom_kill 2\n",
        );
        write(
            &r.join("cpuacct").join(rel).join("cpuacct.usage"),
            "1500000000\n",
        );
        write(&r.join("pids").join(rel).join("pids.current"), "3\n");
        let got = CgroupReader::at(CgroupVersion::V1, r).read("/drover/web/main");
        let want = RawCgroup {
            cpu_ns: 1_500_000_000,
            memory_bytes: 4096,
            memory_peak_bytes: Some(8192),
            pids: 3,
            oom_kills: 2,
        };
        assert_eq!(got, Some(want));
        // Without pids and cpuacct hierarchies the rest is still read.
        fs::remove_dir_all(r.join("pids")).unwrap();
        fs::remove_dir_all(r.join("cpuacct")).unwrap();
        let got = CgroupReader::at(CgroupVersion::V1, r).read(rel).unwrap();
        assert_eq!((got.cpu_ns, got.pids, got.memory_bytes), (0, 0, 4096));
    }

    #[test]
    fn reads_a_v2_container_with_and_without_a_peak() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("drover/web/main");
        write(&dir.join("memory.current"), "1048576\n");
        write(&dir.join("memory.peak"), "2097152\n");
        write(
            &dir.join("memory.events"),
            "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n",
        );
        write(
            &dir.join("cpu.stat"),
            "usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\n",
        );
        write(&dir.join("pids.current"), "7\n");
        let reader = CgroupReader::at(CgroupVersion::V2, root.path());
        let got = reader.read("/drover/web/main").unwrap();
        assert_eq!(got.cpu_ns, 250_000_000);
        assert_eq!(
            (got.memory_bytes, got.memory_peak_bytes),
            (1 << 20, Some(2 << 20))
        );
        assert_eq!((got.pids, got.oom_kills), (7, 1));
        fs::remove_file(dir.join("memory.peak")).unwrap();
        assert_eq!(
            reader.read("drover/web/main").unwrap().memory_peak_bytes,
            None
        );
    }

    #[test]
    fn a_missing_cgroup_is_absent() {
        let root = tempfile::tempdir().unwrap();
        for v in [CgroupVersion::V1, CgroupVersion::V2] {
            assert_eq!(
                CgroupReader::at(v, root.path()).read("/drover/none/main"),
                None
            );
        }
        assert_eq!(keyed("usage_usec x\n", "usage_usec"), None);
        assert_eq!(keyed("user_usec 1\n", "usage_usec"), None);
    }
}
