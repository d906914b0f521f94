//! Files a container gets from Secrets and ConfigMaps (`MountSource::Files`): where they
//! live on the host and the tmpfs check for Secret files.
//!
//! Secret files go only below `R/secrets` (`R` = the run folder), which must be a tmpfs:
//! [`ensure_tmpfs`] asks `statfs` and mounts a small tmpfs there when it is not one, so a
//! Secret is never written to the SD card. ConfigMap files go into the container's folder
//! in the state folder. Both are written again at every start from the desired state
//! (values never reach the agent's records: `RefValue` writes them empty in JSON), bound
//! read-only, `nosuid,nodev,noexec`, and removed with the workload.
//!
//! This module must never log or put a file's content into an error.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use drover_protocol::{ContainerSpec, FileItem, MountSource, RefKind};
use nix::mount::MsFlags;
use nix::sys::statfs::{TMPFS_MAGIC, statfs};

/// Size of the tmpfs mounted for Secret files when the run folder is not one.
pub const SECRETS_TMPFS_BYTES: u64 = 16 << 20;

/// The folder of a container's Secret files below the run folder `run`.
pub fn secrets_dir(run: &Path, container_id: &str) -> PathBuf {
    run.join("secrets").join(container_id)
}

/// The folder of a container's ConfigMap files in its state folder `data`.
pub fn config_dir(data: &Path) -> PathBuf {
    data.join("files")
}

/// One `Files` mount of a container: where its files go on the host.
pub struct FilesMount<'a> {
    pub kind: RefKind,
    pub target: &'a str,
    pub dir: PathBuf,
    pub items: &'a [FileItem],
}

/// The `Files` mounts of `c`, mount `i` in `{secrets or config}/{i}`.
pub fn layout<'a>(c: &'a ContainerSpec, secrets: &Path, config: &Path) -> Vec<FilesMount<'a>> {
    c.mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match &m.source {
            MountSource::Files(f) => {
                let base = match f.from.kind {
                    RefKind::Secret => secrets,
                    RefKind::ConfigMap => config,
                };
                Some(FilesMount {
                    kind: f.from.kind,
                    target: &m.target,
                    dir: base.join(i.to_string()),
                    items: &f.items,
                })
            }
            _ => None,
        })
        .collect()
}

/// A relative path without `..`, `.` or empty components (what the hub's manifest
/// check allows); anything else is refused, whoever signed it.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// See the module documentation.
pub fn ensure_tmpfs(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let on_tmpfs = statfs(dir).map_err(io::Error::from)?.filesystem_type() == TMPFS_MAGIC;
    if !on_tmpfs {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let data = format!("mode=0700,size={SECRETS_TMPFS_BYTES}");
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            flags,
            Some(data.as_str()),
        )
        .map_err(io::Error::from)?;
        if statfs(dir).map_err(io::Error::from)?.filesystem_type() != TMPFS_MAGIC {
            return Err(io::Error::other("still not a tmpfs after mounting one"));
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// `lchown` of `dir` and everything below it (links are not followed).
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            chown_tree(&entry.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_relative_paths() {
        for ok in ["a", "a/b.txt", "..a", "a..b"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", "a//b", "./a", "a/"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }

    #[test]
    fn chown_tree_gives_everything_below() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() && std::env::var("DROVER_REQUIRE_ROOT").is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        chown_tree(dir.path(), 1000, 1001).unwrap();
        for p in ["", "a", "a/b", "a/b/f"] {
            let m = std::fs::symlink_metadata(dir.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (1000, 1001), "{p}");
        }
    }

    #[test]
    fn a_folder_on_disk_gets_a_tmpfs() {
        if !nix::unistd::geteuid().is_root() && std::env::var("DROVER_REQUIRE_ROOT").is_err() {
            return;
        }
        let base = tempfile::tempdir_in("/var/tmp").unwrap();
        let dir = base.path().join("secrets");
        ensure_tmpfs(&dir).unwrap();
        assert_eq!(statfs(&dir).unwrap().filesystem_type(), TMPFS_MAGIC);
        ensure_tmpfs(&dir).unwrap(); // already one: nothing stacked
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
}
