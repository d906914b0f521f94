//! The replay window of hub commands: the highest command id accepted, kept in
//! `<state_dir>/command-id` (written atomically and durably before a command is acted
//! on), so that a command captured off the broker is refused forever after, across agent
//! restarts and reboots.
//!
//! It must never let an id through that is not above the one held.

use std::io;
use std::path::PathBuf;

use tracing::error;

use crate::fsutil::write_private;

/// The highest command id accepted so far, and where it is kept.
pub struct ReplayGuard {
    path: PathBuf,
    held: u64,
    /// The last write failed (full disk): written again at the next accept.
    unsaved: bool,
}

impl ReplayGuard {
    /// Loads the id held in `path` (0 when the file is missing; an unreadable file is an
    /// error: starting from 0 would accept replays).
    pub fn load(path: PathBuf) -> io::Result<ReplayGuard> {
        let held = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: expected a command id: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ReplayGuard {
            path,
            held,
            unsaved: false,
        })
    }

    /// The highest id accepted.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Takes `id` (already checked to be above [`Self::held`]) as the new highest, on disk
    /// first. When the disk refuses, it is still held in memory (replays stay refused while
    /// this agent runs) and the write is tried again at the next command.
    pub fn accept(&mut self, id: u64) {
        debug_assert!(id > self.held);
        self.held = self.held.max(id);
        match write_private(&self.path, format!("{}\n", self.held).as_bytes()) {
            Ok(()) => self.unsaved = false,
            Err(e) => {
                if !self.unsaved {
                    error!(path = %self.path.display(), id,
                        "cannot persist the last command id (replays stay refused until the agent restarts): {e}");
                }
                self.unsaved = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_id_survives_a_restart_and_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("command-id");
        let mut g = ReplayGuard::load(path.clone()).unwrap();
        assert_eq!(g.held(), 0);
        g.accept(41);
        g.accept(42);
        let g = ReplayGuard::load(path.clone()).unwrap();
        assert_eq!(g.held(), 42);
        std::fs::write(&path, "garbage").unwrap();
        assert!(ReplayGuard::load(path).is_err());
    }
}
