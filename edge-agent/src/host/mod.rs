//! The host operations the daemon needs besides containers: the overlay rootfs of a
//! container, pod network namespaces, cgroup cleanup, folders and files of the state
//! folder, and what the board has (memory, CPUs, disk). The daemon reaches the OS only
//! through this trait, [`crate::runtime::Runtime`], [`crate::image::ImageService`] and
//! [`crate::state::StateStore`], so one daemon pass runs in a unit test on fakes.
//!
//! [`LinuxHost`] is the real one; [`fake::FakeHost`] records calls and keeps everything
//! in memory. Nothing here decides anything.

mod linux;

#[cfg(test)]
pub mod fake;

use std::path::{Path, PathBuf};

pub use linux::LinuxHost;

use crate::cgroups::CgroupsError;
use crate::runtime::netns::NetnsError;
use crate::runtime::rootfs::RootfsError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Cgroups(#[from] CgroupsError),
    #[error("{what} {path} in the image: {source}")]
    InRootfs {
        what: &'static str,
        path: String,
        source: pathrs::error::Error,
    },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Largest file read from an image (`/etc/passwd`, `/etc/group`).
pub const MAX_ROOTFS_FILE_BYTES: u64 = 1 << 20;

/// What the board offers, for the status's capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostResources {
    /// `MemTotal`, bytes.
    pub memory_bytes: u64,
    pub cpus: u32,
    /// Free bytes (for unprivileged users) on the state folder's filesystem.
    pub disk_free_bytes: u64,
}

pub trait Host: Send {
    /// Mounts a fresh overlay of `layers` (bottom first) as the rootfs of container
    /// folder `dir` (`dir/bundle/rootfs`, upper and work folders in `dir`), replacing what
    /// an earlier instance left, and makes the image's `/etc/hosts`, `hostname` and
    /// `resolv.conf` plain files when they are links or special files (see
    /// [`crate::runtime::rootfs::prepare_etc_targets`]). Returns the rootfs path.
    fn mount_rootfs(&self, layers: &[PathBuf], dir: &Path) -> Result<PathBuf, HostError>;
    /// Unmounts the rootfs of container folder `dir` and removes the folder.
    fn remove_container_dir(&self, dir: &Path) -> Result<(), HostError>;
    /// A text file of a mounted rootfs (`etc/passwd`), resolved inside the rootfs (a
    /// symlink never leads to the host's files); `None` when absent, not a regular file
    /// (a FIFO must not hang the agent), larger than [`MAX_ROOTFS_FILE_BYTES`] or unreadable.
    fn read_rootfs_file(&self, rootfs: &Path, rel: &str) -> Option<String>;
    /// Creates the absolute folder `path` (a working directory) inside the rootfs with
    /// its missing parents, resolving every component inside the rootfs, as runc does.
    /// An error names the path (e.g. a component that is a file).
    fn ensure_rootfs_dir(&self, rootfs: &Path, path: &str) -> Result<(), HostError>;
    /// Writes a file atomically (e.g. a bundle's `config.json`).
    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError>;
    /// [`Host::write_file`] with mode 0600 (Secret and ConfigMap files).
    fn write_private_file(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError>;
    fn create_dir(&self, dir: &Path) -> Result<(), HostError>;
    /// Removes a folder and everything in it; a missing folder is fine.
    fn remove_dir(&self, dir: &Path) -> Result<(), HostError>;
    /// Makes `dir` (mode 0700) a folder on a tmpfs: nothing when `statfs` says it is one
    /// already, else a small tmpfs (`nosuid,nodev,noexec`) is mounted there. Secret files
    /// go only below such a folder, never on the SD card.
    fn ensure_tmpfs(&self, dir: &Path) -> Result<(), HostError>;
    /// Gives `dir` and everything below it (created by the agent, no links followed) to
    /// `uid:gid`, so a container running as that user can read its Secret and ConfigMap
    /// files (still mode 0600/0700: no other user of the host or container can).
    fn chown_tree(&self, dir: &Path, uid: u32, gid: u32) -> Result<(), HostError>;
    /// Creates a network namespace with `lo` up, pinned at `path` (nothing if it exists).
    fn create_netns(&self, path: &Path) -> Result<(), HostError>;
    /// Removes the namespace pinned at `path`; a missing one is fine.
    fn remove_netns(&self, path: &Path) -> Result<(), HostError>;
    /// Removes cgroup `rel` (e.g. `/drover/web`) and everything below, in every hierarchy.
    fn remove_cgroup(&self, rel: &str) -> Result<(), HostError>;
    /// Memory in use and its limit of cgroup `rel`, bytes.
    fn memory_usage(&self, rel: &str) -> Option<(u64, Option<u64>)>;
    /// The host's `/etc/resolv.conf` (at most 64 KiB; empty when unreadable), for
    /// containers on the host network.
    fn resolv_conf(&self) -> String;
    /// Whether memory+swap limits can be set (cgroup v1 `memsw`, or v2).
    fn swap_accounting(&self) -> bool;
    fn resources(&self, state_dir: &Path) -> HostResources;
}
