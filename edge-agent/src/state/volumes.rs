//! How much the named volumes hold on the state disk, for the low-disk warning: which
//! workload's data is filling the disk, largest first.
//!
//! Measured only while the disk runs low, with a bounded walk (a volume of millions of
//! files must not stall a pass). It only reads: never deletes or changes a volume.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Files and folders looked at per measurement, over all volumes.
pub const MAX_ENTRIES: usize = 20_000;

/// The space one volume holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeUsage {
    pub workload: String,
    pub volume: String,
    /// Bytes allocated (hard links counted once per volume).
    pub bytes: u64,
    /// The walk ran out of budget: at least this much.
    pub partial: bool,
}

/// The usage of every `volumes/<workload>/<volume>/` under `root`, largest first (ties by
/// name), looking at `max_entries` entries at most in all.
pub fn volume_usage(root: &Path, max_entries: usize) -> Vec<VolumeUsage> {
    let mut budget = max_entries;
    let mut out = Vec::new();
    for wl in sorted_dirs(root) {
        for vol in sorted_dirs(&root.join(&wl)) {
            let (bytes, partial) = walk(&root.join(&wl).join(&vol), &mut budget);
            out.push(VolumeUsage {
                workload: wl.clone(),
                volume: vol,
                bytes,
                partial,
            });
        }
    }
    out.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| (&a.workload, &a.volume).cmp(&(&b.workload, &b.volume)))
    });
    out
}

fn sorted_dirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Bytes allocated under `dir` (symlinks not followed), and whether `budget` ran out.
fn walk(dir: &Path, budget: &mut usize) -> (u64, bool) {
    let mut seen = std::collections::HashSet::new();
    let (mut total, mut stack) = (0u64, vec![dir.to_path_buf()]);
    while let Some(p) = stack.pop() {
        if *budget == 0 {
            return (total, true);
        }
        *budget -= 1;
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.nlink() < 2 || meta.is_dir() || seen.insert(meta.ino()) {
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&p)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    (total, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn volumes_are_listed_largest_first_and_the_walk_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (wl, vol, kib) in [("a", "small", 8), ("b", "big", 256), ("b", "empty", 0)] {
            let d = root.join(wl).join(vol);
            fs::create_dir_all(&d).unwrap();
            if kib > 0 {
                fs::write(d.join("f"), vec![1u8; kib << 10]).unwrap();
            }
        }
        let u = volume_usage(root, MAX_ENTRIES);
        let names: Vec<_> = u
            .iter()
            .map(|v| format!("{}/{}", v.workload, v.volume))
            .collect();
        assert_eq!(names, ["b/big", "a/small", "b/empty"]);
        assert!(u[0].bytes >= 256 << 10 && !u[0].partial, "{u:?}");
        assert!(u[1].bytes >= 8 << 10 && u[1].bytes < 256 << 10);

        let bounded = volume_usage(root, 2);
        assert!(bounded.iter().any(|v| v.partial), "{bounded:?}");
        assert!(volume_usage(&root.join("missing"), 10).is_empty());
    }
}
