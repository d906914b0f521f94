//! The real [`Host`]: overlayfs, network namespaces and cgroupfs of this machine.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Host, HostError, HostResources, MAX_ROOTFS_FILE_BYTES};
use crate::cgroups;
use crate::runtime::{netns, rootfs};

#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxHost;

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostError {
    let path = path.to_path_buf();
    move |source| HostError::Io {
        context,
        path,
        source,
    }
}

impl Host for LinuxHost {
    fn mount_rootfs(&self, layers: &[PathBuf], dir: &Path) -> Result<PathBuf, HostError> {
        let root = dir.join("bundle").join("rootfs");
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        rootfs::unmount(&root)?;
        rootfs::reset_upper(&upper, &work)?;
        rootfs::mount_overlay(layers, &upper, &work, &root)?;
        rootfs::prepare_etc_targets(&root)?;
        Ok(root)
    }

    fn remove_container_dir(&self, dir: &Path) -> Result<(), HostError> {
        rootfs::unmount(&dir.join("bundle").join("rootfs"))?;
        self.remove_dir(dir)
    }

    fn read_rootfs_file(&self, rootfs: &Path, rel: &str) -> Option<String> {
        use std::io::Read;
        let root = pathrs::Root::open(rootfs).ok()?;
        let file = crate::image::open_regular(&root, Path::new(rel)).ok()?;
        if file.metadata().ok()?.len() > MAX_ROOTFS_FILE_BYTES {
            return None;
        }
        let mut text = String::new();
        file.take(MAX_ROOTFS_FILE_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }

    fn ensure_rootfs_dir(&self, rootfs: &Path, path: &str) -> Result<(), HostError> {
        use std::os::unix::fs::PermissionsExt;
        let in_rootfs = |source| HostError::InRootfs {
            what: "working directory",
            path: path.to_owned(),
            source,
        };
        let root = pathrs::Root::open(rootfs).map_err(in_rootfs)?;
        root.mkdir_all(path, &fs::Permissions::from_mode(0o755))
            .map_err(in_rootfs)?;
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError> {
        crate::fsutil::write_atomic(path, bytes).map_err(io("writing", path))
    }

    fn write_private_file(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError> {
        crate::fsutil::write_private(path, bytes).map_err(io("writing", path))
    }

    fn create_dir(&self, dir: &Path) -> Result<(), HostError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))
    }

    fn remove_dir(&self, dir: &Path) -> Result<(), HostError> {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(e)),
            _ => Ok(()),
        }
    }

    fn ensure_tmpfs(&self, dir: &Path) -> Result<(), HostError> {
        crate::runtime::files::ensure_tmpfs(dir).map_err(io("mounting a tmpfs at", dir))
    }

    fn chown_tree(&self, dir: &Path, uid: u32, gid: u32) -> Result<(), HostError> {
        crate::runtime::files::chown_tree(dir, uid, gid).map_err(io("changing the owner of", dir))
    }

    fn create_netns(&self, path: &Path) -> Result<(), HostError> {
        Ok(netns::create(path)?)
    }

    fn remove_netns(&self, path: &Path) -> Result<(), HostError> {
        if !path.exists() {
            return Ok(());
        }
        Ok(netns::remove(path)?)
    }

    fn remove_cgroup(&self, rel: &str) -> Result<(), HostError> {
        Ok(cgroups::remove_tree(rel)?)
    }

    fn memory_usage(&self, rel: &str) -> Option<(u64, Option<u64>)> {
        cgroups::memory_usage(rel)
    }

    fn resolv_conf(&self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Ok(f) = fs::File::open("/etc/resolv.conf") {
            let _ = f.take(64 << 10).read_to_string(&mut text);
        }
        text
    }

    fn swap_accounting(&self) -> bool {
        cgroups::swap_accounting()
    }

    fn resources(&self, state_dir: &Path) -> HostResources {
        HostResources {
            memory_bytes: mem_total_bytes(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            disk_free_bytes: crate::fsutil::disk_free_bytes(state_dir).unwrap_or(0),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes (0 when unreadable).
fn mem_total_bytes() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A container writes its volumes: removing them (and logs) must delete the links it
    /// planted, never what they point at, and not open its FIFOs.
    #[test]
    fn removing_a_volume_never_follows_what_the_container_planted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (vol, outside) = (dir.path().join("volumes/web"), dir.path().join("host"));
        fs::create_dir_all(vol.join("data/sub")).expect("volume");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(outside.join("keep"), "k").expect("keep");
        symlink(&outside, vol.join("data/dir-link")).expect("ln");
        symlink(outside.join("keep"), vol.join("data/sub/file-link")).expect("ln");
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&vol.join("data/fifo"), mode).expect("fifo");
        LinuxHost.remove_dir(&vol).expect("remove");
        assert!(!vol.exists());
        assert_eq!(fs::read_to_string(outside.join("keep")).expect("kept"), "k");
        // A volume folder that is itself a link (it never is: the agent creates it, and a
        // container sees only its contents) goes as a link.
        symlink(&outside, &vol).expect("ln");
        LinuxHost.remove_dir(&vol).expect("remove the link");
        assert!(fs::symlink_metadata(&vol).is_err());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn rootfs_files_are_read_inside_the_rootfs_and_only_when_regular() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, host) = (dir.path().join("rootfs"), dir.path().join("host-passwd"));
        fs::create_dir_all(root.join("etc")).expect("etc");
        fs::write(&host, "ghost:x:4242:4242::/:/bin/sh\n").expect("host");
        fs::write(root.join("etc/group"), "g:x:1:\n").expect("group");
        assert_eq!(
            LinuxHost.read_rootfs_file(&root, "etc/group").as_deref(),
            Some("g:x:1:\n")
        );
        symlink(&host, root.join("etc/passwd")).expect("ln");
        assert_eq!(LinuxHost.read_rootfs_file(&root, "etc/passwd"), None);
        fs::remove_file(root.join("etc/passwd")).expect("rm");
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&root.join("etc/passwd"), mode).expect("fifo");
        assert_eq!(LinuxHost.read_rootfs_file(&root, "etc/passwd"), None);
        let big = vec![b'x'; MAX_ROOTFS_FILE_BYTES as usize + 1];
        fs::write(root.join("etc/group"), big).expect("big");
        assert_eq!(LinuxHost.read_rootfs_file(&root, "etc/group"), None);
    }
}
