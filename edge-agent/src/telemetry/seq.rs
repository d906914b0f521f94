//! Telemetry sequence numbers that rise strictly per device, across agent restarts: the
//! hub drops a sample whose `seq` is not above the last one it accepted (a replay).
//!
//! `seq = epoch << 32 | counter`. At start the agent reads the epoch the last agent used
//! from `<state_dir>/telemetry-epoch` and writes the new one atomically (fsynced) before
//! its first sample. The new epoch is `max(stored + 1, unix seconds now)`: the stored
//! value keeps it rising on a board whose clock is not set yet (no RTC, no network), the
//! clock keeps it rising when the file was lost (a state folder wiped, a write refused by
//! a full or read-only disk) — then only an agent restarted within the same second with
//! an unset clock could repeat an epoch, and the hub would drop its samples as replays
//! until the next restart (logged). The counter runs within the epoch; at 2^32 samples
//! the epoch moves on by one in memory.
//!
//! [`next_epoch`] and [`SeqGen`] are pure; [`open`] is the thin file shell.

use std::io;
use std::path::{Path, PathBuf};

/// The file in the state folder holding the last epoch used.
pub const EPOCH_FILE: &str = "telemetry-epoch";

/// The same for the hub link's status and presence sequence numbers
/// (`drover_protocol::freshness`).
pub const LINK_EPOCH_FILE: &str = "link-epoch";

/// Largest epoch: it is the upper half of a `u64`.
const MAX_EPOCH: u64 = u32::MAX as u64;

/// The epoch of a starting agent: above the stored one and at least the clock's seconds.
pub fn next_epoch(stored: Option<u64>, now_s: u64) -> u64 {
    stored
        .map_or(1, |e| e.saturating_add(1))
        .max(now_s)
        .min(MAX_EPOCH)
}

/// Parses the epoch file's text (a decimal number); `None` when not one.
pub fn parse_epoch(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Hands out `epoch << 32 | counter`, strictly rising.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqGen {
    epoch: u64,
    counter: u32,
}

impl SeqGen {
    pub fn new(epoch: u64) -> Self {
        SeqGen {
            epoch: epoch.min(MAX_EPOCH),
            counter: 0,
        }
    }

    /// The next sequence number (never 0: the epoch is at least 1).
    pub fn next_seq(&mut self) -> u64 {
        if self.counter == u32::MAX && self.epoch < MAX_EPOCH {
            self.epoch += 1;
            self.counter = 0;
        }
        let seq = self.epoch << 32 | u64::from(self.counter);
        self.counter = self.counter.saturating_add(1);
        seq
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// Why the epoch could not be kept on disk (the agent samples anyway).
#[derive(Debug, thiserror::Error)]
#[error("cannot save the sequence epoch in {path}: {source}")]
pub struct SeqError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// Reads the last epoch from `state_dir`, saves the next one and returns its generator;
/// when saving fails the generator is still usable (see the module doc), and the error
/// says why.
pub fn open(state_dir: &Path, now_s: u64) -> (SeqGen, Option<SeqError>) {
    open_file(state_dir, EPOCH_FILE, now_s)
}

/// [`open`] with another epoch file (`file` in `state_dir`).
pub fn open_file(state_dir: &Path, file: &str, now_s: u64) -> (SeqGen, Option<SeqError>) {
    let path = state_dir.join(file);
    let stored = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| parse_epoch(&t));
    let epoch = next_epoch(stored, now_s);
    let saved = crate::fsutil::write_private(&path, format!("{epoch}\n").as_bytes());
    let err = saved.err().map(|source| SeqError { path, source });
    (SeqGen::new(epoch), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_rises_over_the_stored_one_and_the_clock() {
        assert_eq!(next_epoch(None, 0), 1);
        assert_eq!(next_epoch(Some(7), 0), 8, "clock not set: the file decides");
        assert_eq!(next_epoch(None, 1_780_000_000), 1_780_000_000, "file lost");
        assert_eq!(
            next_epoch(Some(1_780_000_000), 1_780_000_000),
            1_780_000_001
        );
        assert_eq!(next_epoch(Some(5), 1_780_000_000), 1_780_000_000);
        assert_eq!(next_epoch(Some(u64::MAX), 3), MAX_EPOCH);
        assert_eq!(parse_epoch("42\n"), Some(42));
        assert_eq!(parse_epoch("x"), None);
    }

    #[test]
    fn sequence_numbers_rise_within_and_across_epochs() {
        let mut a = SeqGen::new(1);
        let (s1, s2) = (a.next_seq(), a.next_seq());
        assert_eq!((s1, s2), (1 << 32, (1 << 32) + 1));
        let mut b = SeqGen::new(2);
        assert!(b.next_seq() > s2);
        let mut full = SeqGen {
            epoch: 3,
            counter: u32::MAX - 1,
        };
        let last = full.next_seq();
        let wrapped = full.next_seq();
        assert!(wrapped > last);
        assert_eq!((full.epoch(), wrapped), (4, 4 << 32));
    }

    #[test]
    fn restarts_read_and_write_the_epoch_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut g1, err) = open(dir.path(), 0);
        assert!(err.is_none());
        let first = g1.next_seq();
        let (mut g2, _) = open(dir.path(), 0);
        let second = g2.next_seq();
        assert!(second > first, "{second} > {first}");
        let text = std::fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap();
        assert_eq!(parse_epoch(&text), Some(2));
        // A corrupt file falls back to the clock.
        std::fs::write(dir.path().join(EPOCH_FILE), "garbage").unwrap();
        let (g3, _) = open(dir.path(), 1_780_000_000);
        assert_eq!(g3.epoch(), 1_780_000_000);
    }

    #[test]
    fn an_unwritable_state_folder_still_gives_a_clock_epoch_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder");
        let (g, err) = open(&missing, 1_780_000_000);
        assert_eq!(g.epoch(), 1_780_000_000);
        let err = err.expect("the save failed");
        assert!(err.to_string().contains("telemetry-epoch"), "{err}");
    }
}
