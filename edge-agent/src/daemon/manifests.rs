//! Standalone mode's source of desired state: a folder of workload manifests (YAML),
//! like kubelet's static pods. Reading is all-or-nothing: one broken file keeps the last
//! good set in force, so a typo never stops a running workload.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_protocol::WorkloadSpec;
use drover_protocol::manifest::parse_workloads;
use inotify::{Inotify, WatchMask};
use tokio::io::unix::AsyncFd;
use tracing::warn;

/// Largest manifest file read; anything bigger is an error, not a workload.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads every `*.yaml`/`*.yml` file of `dir` (sorted by name). A missing folder means no
/// workloads. Errors name the file, line and column.
pub fn read_dir(dir: &Path) -> Result<Vec<WorkloadSpec>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let shown = file.display().to_string();
        let meta = fs::metadata(&file).map_err(|e| format!("{shown}: {e}"))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{shown}: file is larger than {MAX_FILE_BYTES} bytes"
            ));
        }
        let text = fs::read_to_string(&file).map_err(|e| format!("{shown}: {e}"))?;
        for wl in parse_workloads(&shown, &text).map_err(|e| e.to_string())? {
            if !seen.insert(wl.name.clone()) {
                return Err(format!(
                    "{shown}: workload `{}` is defined more than once in {}",
                    wl.name,
                    dir.display()
                ));
            }
            all.push(wl);
        }
    }
    Ok(all)
}

/// Wakes the daemon when something in the manifests folder changes. Without inotify (or
/// without the folder) it never fires, and the periodic resync picks changes up.
pub struct Watcher {
    fd: Option<AsyncFd<Inotify>>,
}

impl Watcher {
    pub fn new(dir: Option<&Path>) -> Self {
        let fd = dir.and_then(|d| {
            let ino = Inotify::init().ok()?;
            let mask = WatchMask::CREATE
                | WatchMask::CLOSE_WRITE
                | WatchMask::DELETE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF;
            if let Err(e) = ino.watches().add(d, mask) {
                warn!(dir = %d.display(), "cannot watch manifests folder ({e}); changes are seen at the next resync");
                return None;
            }
            // SAFETY: the inotify fd is owned by `ino`, which the AsyncFd owns until drop.
            unsafe { AsyncFd::register(ino) }.ok()
        });
        Watcher { fd }
    }

    /// Resolves when the folder changed. Cancel-safe: events are consumed only in the
    /// same poll that returns, so a `select!` that drops this future loses nothing.
    pub async fn changed(&mut self) {
        let Some(fd) = self.fd.as_mut() else {
            return std::future::pending().await;
        };
        let mut buf = [0u8; 4096];
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return std::future::pending().await;
            };
            if let Ok(Ok(_)) =
                guard.try_io(|ino| ino.get_mut().read_events(&mut buf).map(|ev| ev.count()))
            {
                return;
            }
        }
    }

    /// Editors and `cp` write in several steps: after a change, let them finish and drop
    /// the events they caused, so one edit is read once.
    pub async fn settle(&mut self) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Some(fd) = self.fd.as_mut() {
            let mut buf = [0u8; 4096];
            while fd
                .get_mut()
                .read_events(&mut buf)
                .is_ok_and(|ev| ev.count() > 0)
            {}
        }
    }
}
