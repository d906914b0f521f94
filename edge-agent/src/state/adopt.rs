//! At agent start, makes the shim statuses kept on the state disk visible where the agent
//! looks for them (the runtime folder), so that no container is taken for lost:
//!
//! * containers started by an agent from before the runtime folder: their shim writes
//!   `state_dir/containers/{id}/status.json` and libcontainer state under
//!   `state_dir/runtime/{id}` for as long as it lives;
//! * the durable copy of a container's final status (`RunArgs::data_dir`), after a
//!   reboot emptied the runtime folder.
//!
//! Both become symlinks (`run_dir/containers/{id}/status.json`, `run_dir/runtime/{id}`):
//! a running old shim keeps writing its own paths, and the agent sees every write. The
//! links are removed like the files they stand for (`Runtime::clear`, `shim delete`).
//! This module must never move, rewrite or delete anything on the state disk.

use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use tracing::info;

use super::StatePaths;
use crate::shim::status::STATUS_FILE;

/// Links every status on the state disk that the runtime folder lacks; returns the ids
/// of the containers it linked. An agent whose runtime folder is its state folder has
/// nothing to link.
pub fn link_disk_statuses(paths: &StatePaths) -> io::Result<Vec<String>> {
    if paths.run == paths.root {
        return Ok(vec![]);
    }
    let mut linked = Vec::new();
    let entries = match std::fs::read_dir(paths.root.join("containers")) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(linked),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let id = entry?.file_name().to_string_lossy().into_owned();
        if link_one(paths, &id)? {
            info!(container = %id, "status kept on the state disk linked into the runtime folder");
            linked.push(id);
        }
    }
    Ok(linked)
}

/// Links container `id`'s status (and libcontainer state, if any); false when there is
/// nothing to link or the runtime folder has its own.
fn link_one(paths: &StatePaths, id: &str) -> io::Result<bool> {
    let disk = paths.root.join("containers").join(id);
    let status = disk.join(STATUS_FILE);
    let run = paths.run.join("containers").join(id);
    if !status.is_file() || exists_or_link(&run.join(STATUS_FILE)) {
        return Ok(false);
    }
    std::fs::create_dir_all(&run)?;
    symlink(&status, run.join(STATUS_FILE))?;
    let state = paths.legacy_runtime().join(id);
    let link = paths.runtime().join(id);
    if state.is_dir() && !exists_or_link(&link) {
        symlink(&state, &link)?;
    }
    Ok(true)
}

fn exists_or_link(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn paths() -> (tempfile::TempDir, StatePaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path().join("state"), dir.path().join("run"));
        paths.ensure().unwrap();
        (dir, paths)
    }

    #[test]
    fn a_status_on_disk_is_linked_with_its_libcontainer_state() {
        let (_d, p) = paths();
        let old = p.root.join("containers/web.main");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join(STATUS_FILE), b"{}").unwrap();
        std::fs::create_dir_all(p.legacy_runtime().join("web.main")).unwrap();
        // Only overlay folders: a container that never finished under this layout.
        std::fs::create_dir_all(p.root.join("containers/db.main/upper")).unwrap();

        assert_eq!(link_disk_statuses(&p).unwrap(), vec!["web.main".to_owned()]);
        let link = p.run.join("containers/web.main").join(STATUS_FILE);
        assert_eq!(std::fs::read_link(&link).unwrap(), old.join(STATUS_FILE));
        let state = std::fs::read_link(p.runtime().join("web.main")).unwrap();
        assert_eq!(state, p.legacy_runtime().join("web.main"));
        assert!(!p.run.join("containers/db.main").exists());
        // Idempotent: a second agent start links nothing more.
        assert!(link_disk_statuses(&p).unwrap().is_empty());
    }

    #[test]
    fn a_status_in_the_runtime_folder_wins_and_one_folder_for_both_links_nothing() {
        let (_d, p) = paths();
        for base in [&p.root, &p.run] {
            let d = base.join("containers/web.main");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(STATUS_FILE), b"{}").unwrap();
        }
        assert!(link_disk_statuses(&p).unwrap().is_empty());
        assert!(!p.run.join("containers/web.main/status.json").is_symlink());
        let same = StatePaths::new(&p.root, &p.root);
        std::fs::remove_dir_all(p.run.join("containers/web.main")).unwrap();
        assert!(link_disk_statuses(&same).unwrap().is_empty());
    }
}
