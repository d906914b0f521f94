//! Standalone mode's source of desired state: a folder of workload manifests (YAML),
//! like kubelet's static pods. Reading is all-or-nothing: one broken file keeps the last
//! good set in force, so a typo never stops a running workload. The watcher reads a
//! manifest as soon as it is complete (renamed into place or closed after writing) and
//! waits briefly only while one is being written or has just disappeared.
//!
//! Each file is checked alone when parsed (a `dependsOn` cycle inside one file is located
//! at file:line:col); a cycle across files is refused here, naming each workload of the
//! cycle with its file.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_protocol::manifest::{parse_workloads, workload_cycle};
use drover_protocol::{Name, WorkloadSpec};
use inotify::{EventMask, Inotify, WatchMask};
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
    let mut seen = BTreeMap::new();
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
            if seen.insert(wl.name.clone(), shown.clone()).is_some() {
                return Err(format!(
                    "{shown}: workload `{}` is defined more than once in {}",
                    wl.name,
                    dir.display()
                ));
            }
            all.push(wl);
        }
    }
    match workload_cycle(&all) {
        Some(cycle) => Err(cycle_error(&cycle, &seen)),
        None => Ok(all),
    }
}

/// `dependsOn forms a cycle across manifest files: a (/m/a.yaml) → b (/m/b.yaml) → a (…)`.
fn cycle_error(cycle: &[&Name], files: &BTreeMap<Name, String>) -> String {
    let path: Vec<String> = cycle
        .iter()
        .map(|n| match files.get(*n) {
            Some(f) => format!("{n} ({f})"),
            None => n.to_string(),
        })
        .collect();
    format!(
        "dependsOn forms a cycle across manifest files: {}",
        path.join(" → ")
    )
}

/// How long [`Watcher::settle`] waits at most for a manifest being written to be closed,
/// or for a manifest that disappeared to come back (editors save by rename or delete
/// and re-create). A plain rename into the folder or a finished write is read at once.
const SETTLE: Duration = Duration::from_millis(20);

/// What one inotify event means for the manifests folder.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Not about a manifest (temporary files, other extensions).
    Ignore,
    /// The folder itself went away or events were lost: read it again.
    Folder,
    /// A manifest is in flux (created but not yet closed, or gone): wait a little.
    InFlux(OsString),
    /// A manifest is complete (closed after writing, or renamed into place).
    Complete(OsString),
}

fn is_manifest(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|x| x == "yaml" || x == "yml")
}

/// Classifies one event (pure; the rules `read_dir` applies to file names).
fn classify(mask: EventMask, name: Option<&OsStr>) -> Seen {
    if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::Q_OVERFLOW) {
        return Seen::Folder;
    }
    let Some(name) = name.filter(|n| is_manifest(n)) else {
        return Seen::Ignore;
    };
    if mask.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO) {
        Seen::Complete(name.to_owned())
    } else if mask.intersects(EventMask::CREATE | EventMask::DELETE | EventMask::MOVED_FROM) {
        Seen::InFlux(name.to_owned())
    } else {
        Seen::Ignore
    }
}

/// Wakes the daemon when something in the manifests folder changes. Without inotify (or
/// without the folder) it never fires, and the periodic resync picks changes up.
pub struct Watcher {
    fd: Option<AsyncFd<Inotify>>,
    /// Manifests created but not yet closed, or removed and not (yet) back.
    in_flux: BTreeSet<OsString>,
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
        Watcher {
            fd,
            in_flux: BTreeSet::new(),
        }
    }

    /// Resolves when a manifest changed (events about other files are consumed and
    /// ignored). Cancel-safe: events are consumed only in the poll that looks at them.
    pub async fn changed(&mut self) {
        let Watcher { fd, in_flux } = self;
        let Some(fd) = fd.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return std::future::pending().await;
            };
            if let Ok(Ok(true)) = guard.try_io(|ino| take_events(ino.get_mut(), in_flux)) {
                return;
            }
        }
    }

    /// Lets writers finish: takes the events already queued and, while a manifest is
    /// still being written or has just disappeared, waits for more (at most [`SETTLE`]),
    /// so one edit is read once and an editor's save never removes a workload.
    pub async fn settle(&mut self) {
        let Watcher { fd, in_flux } = self;
        let Some(fd) = fd.as_mut() else { return };
        let deadline = tokio::time::Instant::now() + SETTLE;
        let _ = take_events(fd.get_mut(), in_flux);
        while !in_flux.is_empty() {
            match tokio::time::timeout_at(deadline, fd.readable_mut()).await {
                Ok(Ok(mut guard)) => {
                    let _ = guard.try_io(|ino| take_events(ino.get_mut(), in_flux));
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        in_flux.clear();
    }
}

/// Reads every queued event (until the fd would block) into `in_flux`; true when one of
/// them concerns a manifest or the folder. `Err` only when nothing could be read.
fn take_events(ino: &mut Inotify, in_flux: &mut BTreeSet<OsString>) -> std::io::Result<bool> {
    let mut buf = [0u8; 4096];
    let mut relevant = false;
    let mut read_any = false;
    loop {
        let events = match ino.read_events(&mut buf) {
            Ok(ev) => ev,
            Err(e) if read_any && e.kind() == std::io::ErrorKind::WouldBlock => {
                return Ok(relevant);
            }
            Err(e) => return Err(e),
        };
        read_any = true;
        let mut count = 0;
        for ev in events {
            count += 1;
            match classify(ev.mask, ev.name) {
                Seen::Ignore => {}
                Seen::Folder => relevant = true,
                Seen::InFlux(name) => {
                    in_flux.insert(name);
                    relevant = true;
                }
                Seen::Complete(name) => {
                    in_flux.remove(&name);
                    relevant = true;
                }
            }
        }
        if count == 0 {
            return Ok(relevant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    fn manifest(name: &str, depends_on: &str) -> String {
        format!(
            "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  dependsOn:\n    - {{workload: {depends_on}, condition: started}}\n  containers:\n    - name: app\n      image: oci:/img/a\n"
        )
    }

    #[test]
    fn a_cycle_across_files_is_refused_naming_each_workload_and_its_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.yaml"), manifest("a", "b")).unwrap();
        fs::write(dir.path().join("b.yaml"), manifest("b", "c")).unwrap();
        fs::write(dir.path().join("c.yaml"), manifest("c", "x")).unwrap();
        let ok = read_dir(dir.path()).expect("a chain is no cycle, and x is only a wait");
        assert_eq!(ok.len(), 3);
        fs::write(dir.path().join("c.yaml"), manifest("c", "a")).unwrap();
        let err = read_dir(dir.path()).unwrap_err();
        let [a, b, c] =
            ["a", "b", "c"].map(|f| dir.path().join(format!("{f}.yaml")).display().to_string());
        assert_eq!(
            err,
            format!(
                "dependsOn forms a cycle across manifest files: a ({a}) → b ({b}) → c ({c}) → a ({a})"
            )
        );
    }

    #[test]
    fn temporary_and_foreign_files_are_ignored() {
        for (mask, n) in [
            (EventMask::CREATE, ".web.tmp"),
            (EventMask::CLOSE_WRITE, ".web.tmp"),
            (EventMask::MOVED_FROM, ".web.tmp"),
            (EventMask::MOVED_TO, "notes.txt"),
            (EventMask::CLOSE_WRITE, ".web.yaml.swp"),
        ] {
            assert_eq!(classify(mask, name(n)), Seen::Ignore, "{mask:?} {n}");
        }
        assert_eq!(classify(EventMask::CREATE, None), Seen::Ignore);
    }

    #[test]
    fn finished_writes_and_renames_into_place_are_complete() {
        assert_eq!(
            classify(EventMask::MOVED_TO, name("web.yaml")),
            Seen::Complete("web.yaml".into())
        );
        assert_eq!(
            classify(EventMask::CLOSE_WRITE, name("db.yml")),
            Seen::Complete("db.yml".into())
        );
    }

    #[test]
    fn creates_and_removals_wait_for_the_writer() {
        for mask in [EventMask::CREATE, EventMask::DELETE, EventMask::MOVED_FROM] {
            assert_eq!(
                classify(mask, name("web.yaml")),
                Seen::InFlux("web.yaml".into()),
                "{mask:?}"
            );
        }
    }

    #[test]
    fn the_folder_going_away_or_lost_events_mean_read_again() {
        for mask in [
            EventMask::DELETE_SELF,
            EventMask::MOVE_SELF,
            EventMask::Q_OVERFLOW,
        ] {
            assert_eq!(classify(mask, None), Seen::Folder, "{mask:?}");
        }
    }

    /// Real inotify: a rename into the folder is read at once; an editor-style save
    /// (old file moved away, new one written) is seen as one change once it is complete.
    #[tokio::test]
    async fn settle_returns_at_once_for_a_rename_and_waits_for_an_editor_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(Some(dir.path()));
        fs::write(dir.path().join(".web.tmp"), "a").unwrap();
        fs::rename(dir.path().join(".web.tmp"), dir.path().join("web.yaml")).unwrap();
        w.changed().await;
        let t = std::time::Instant::now();
        w.settle().await;
        assert!(
            t.elapsed() < SETTLE,
            "a rename into place needs no settling"
        );

        fs::rename(dir.path().join("web.yaml"), dir.path().join("web.yaml~")).unwrap();
        w.changed().await;
        let path = dir.path().join("web.yaml");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            fs::write(path, "b").unwrap();
        });
        let t = std::time::Instant::now();
        w.settle().await;
        writer.join().unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(5),
            "waited for the new file"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("web.yaml")).unwrap(),
            "b"
        );
        assert!(w.in_flux.is_empty());
    }
}
