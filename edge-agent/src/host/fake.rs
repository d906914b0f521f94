//! A [`Host`] for unit tests: records every call, keeps folders, files, mounts and
//! namespaces as sets in memory, and fails what the test scripts to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Host, HostError, HostResources};
use crate::runtime::rootfs::RootfsError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCall {
    MountRootfs(PathBuf),
    RemoveContainerDir(PathBuf),
    CreateNetns(PathBuf),
    RemoveNetns(PathBuf),
    RemoveCgroup(String),
    RemoveDir(PathBuf),
    EnsureTmpfs(PathBuf),
    ChownTree(PathBuf, u32, u32),
}

#[derive(Default)]
struct Inner {
    calls: Vec<HostCall>,
    mounts: BTreeSet<PathBuf>,
    netns: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// Mounting a rootfs fails with "no layers" while set.
    fail_mounts: bool,
}

/// Clones share the same fake.
#[derive(Clone, Default)]
pub struct FakeHost {
    inner: Arc<Mutex<Inner>>,
}

impl FakeHost {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn take_calls(&self) -> Vec<HostCall> {
        std::mem::take(&mut self.lock().calls)
    }

    pub fn fail_mounts(&self, fail: bool) {
        self.lock().fail_mounts = fail;
    }

    pub fn mounted(&self) -> BTreeSet<PathBuf> {
        self.lock().mounts.clone()
    }

    pub fn netns(&self) -> BTreeSet<PathBuf> {
        self.lock().netns.clone()
    }

    pub fn dir_exists(&self, dir: &Path) -> bool {
        self.lock().dirs.contains(dir)
    }

    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).cloned()
    }
}

impl Host for FakeHost {
    fn mount_rootfs(&self, _layers: &[PathBuf], dir: &Path) -> Result<PathBuf, HostError> {
        let mut inner = self.lock();
        inner.calls.push(HostCall::MountRootfs(dir.to_path_buf()));
        let root = dir.join("bundle").join("rootfs");
        if inner.fail_mounts {
            return Err(RootfsError::NoLayers(root).into());
        }
        inner.mounts.insert(root.clone());
        inner.dirs.insert(dir.to_path_buf());
        Ok(root)
    }

    fn remove_container_dir(&self, dir: &Path) -> Result<(), HostError> {
        let mut inner = self.lock();
        inner
            .calls
            .push(HostCall::RemoveContainerDir(dir.to_path_buf()));
        inner.mounts.retain(|m| !m.starts_with(dir));
        inner.dirs.retain(|d| !d.starts_with(dir));
        inner.files.retain(|f, _| !f.starts_with(dir));
        Ok(())
    }

    fn read_rootfs_file(&self, rootfs: &Path, rel: &str) -> Option<String> {
        let bytes = self.lock().files.get(&rootfs.join(rel)).cloned()?;
        String::from_utf8(bytes).ok()
    }

    fn ensure_rootfs_dir(&self, rootfs: &Path, path: &str) -> Result<(), HostError> {
        let dir = rootfs.join(path.trim_start_matches('/'));
        self.lock().dirs.insert(dir);
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError> {
        self.lock().files.insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }

    fn write_private_file(&self, path: &Path, bytes: &[u8]) -> Result<(), HostError> {
        self.write_file(path, bytes)
    }

    fn ensure_tmpfs(&self, dir: &Path) -> Result<(), HostError> {
        let mut inner = self.lock();
        inner.calls.push(HostCall::EnsureTmpfs(dir.to_path_buf()));
        inner.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn chown_tree(&self, dir: &Path, uid: u32, gid: u32) -> Result<(), HostError> {
        let call = HostCall::ChownTree(dir.to_path_buf(), uid, gid);
        self.lock().calls.push(call);
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> Result<(), HostError> {
        self.lock().dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> Result<(), HostError> {
        let mut inner = self.lock();
        inner.calls.push(HostCall::RemoveDir(dir.to_path_buf()));
        inner.dirs.retain(|d| !d.starts_with(dir));
        inner.files.retain(|f, _| !f.starts_with(dir));
        Ok(())
    }

    fn create_netns(&self, path: &Path) -> Result<(), HostError> {
        let mut inner = self.lock();
        inner.calls.push(HostCall::CreateNetns(path.to_path_buf()));
        inner.netns.insert(path.to_path_buf());
        Ok(())
    }

    fn remove_netns(&self, path: &Path) -> Result<(), HostError> {
        let mut inner = self.lock();
        inner.calls.push(HostCall::RemoveNetns(path.to_path_buf()));
        inner.netns.remove(path);
        Ok(())
    }

    fn remove_cgroup(&self, rel: &str) -> Result<(), HostError> {
        self.lock()
            .calls
            .push(HostCall::RemoveCgroup(rel.to_owned()));
        Ok(())
    }

    fn memory_usage(&self, _rel: &str) -> Option<(u64, Option<u64>)> {
        None
    }

    fn resolv_conf(&self) -> String {
        "nameserver 192.0.2.53\n".to_owned()
    }

    fn swap_accounting(&self) -> bool {
        true
    }

    fn resources(&self, _state_dir: &Path) -> HostResources {
        HostResources {
            memory_bytes: 1 << 30,
            cpus: 4,
            disk_free_bytes: 10 << 30,
        }
    }
}
