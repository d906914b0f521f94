//! The bounded telemetry history: per device, the last sample of each minute (device
//! clock), kept for `telemetry.history` and pruned every minute, in its own SQLite file
//! (`telemetry.db`, apart from the fleet store: a minute's flush of 10,000 rows never
//! waits on, or delays, a fleet change).
//!
//! Samples are stored as sent (postcard), so the history keeps every field and charts
//! compute rates from consecutive points. The writer keeps at most one pending sample per
//! device in memory. This module must never decide anything about devices.

use std::collections::HashMap;
use std::path::Path;

use drover_protocol::{Telemetry, decode, encode};
use rusqlite::{Connection, OptionalExtension, params};

use super::view::{DeviceHistory, history_point};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
    device TEXT NOT NULL,
    minute INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sample BLOB NOT NULL,
    PRIMARY KEY (device, minute)
) WITHOUT ROWID;
";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("telemetry history database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot start the telemetry thread: {0}")]
    Thread(String),
}

/// The writing side, owned by the telemetry thread.
pub struct HistoryWriter {
    conn: Connection,
    /// Minutes kept; 0 = no history at all.
    keep_minutes: u64,
    /// Latest sample per device not yet written: (minute, seq, encoded sample).
    pending: HashMap<String, (u64, u64, Vec<u8>)>,
}

fn open(path: &Path) -> Result<Connection, HistoryError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl HistoryWriter {
    /// Opens (creating) the history at `path`, keeping `keep_minutes` minutes.
    pub fn open(path: &Path, keep_minutes: u64) -> Result<Self, HistoryError> {
        Ok(HistoryWriter {
            conn: open(path)?,
            keep_minutes,
            pending: HashMap::new(),
        })
    }

    /// The highest seq stored per device: the replay floor after a hub restart.
    pub fn max_seqs(&self) -> Result<HashMap<String, u64>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare("SELECT device, MAX(seq) FROM samples GROUP BY device")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (device, seq) = row?;
            out.insert(device, seq as u64);
        }
        Ok(out)
    }

    /// Notes `sample` as the latest of its minute; written at the next `flush`. A sample
    /// of a newer minute first moves the pending one of the older minute to the database.
    pub fn record(&mut self, device: &str, sample: &Telemetry) -> Result<(), HistoryError> {
        if self.keep_minutes == 0 {
            return Ok(());
        }
        let minute = sample.time_s / 60;
        let Ok(bytes) = encode(sample) else {
            return Ok(()); // It was decoded from a message within the size limit.
        };
        let old = self
            .pending
            .insert(device.to_owned(), (minute, sample.seq, bytes));
        if let Some((m, seq, b)) = old.filter(|(m, _, _)| *m != minute) {
            self.conn.execute(
                "INSERT OR REPLACE INTO samples (device, minute, seq, sample) VALUES (?1, ?2, ?3, ?4)",
                params![device, m as i64, seq as i64, b],
            )?;
        }
        Ok(())
    }

    /// Writes every pending sample in one transaction and prunes rows older than the kept
    /// window before `now_s`; returns the rows written.
    pub fn flush(&mut self, now_s: u64) -> Result<u64, HistoryError> {
        if self.keep_minutes == 0 {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut written = 0;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO samples (device, minute, seq, sample) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (device, (minute, seq, bytes)) in &self.pending {
                put.execute(params![device, *minute as i64, *seq as i64, bytes])?;
                written += 1;
            }
            let oldest = (now_s / 60).saturating_sub(self.keep_minutes);
            tx.execute("DELETE FROM samples WHERE minute < ?1", [oldest as i64])?;
        }
        tx.commit()?;
        self.pending.clear();
        Ok(written)
    }
}

/// A read-only connection for the API.
pub struct HistoryReader {
    conn: Connection,
}

impl HistoryReader {
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Ok(HistoryReader { conn: open(path)? })
    }

    /// The points of `device` from the last `minutes` minutes before `now_s`, oldest
    /// first, with `latest` (the sample in memory, not yet written) appended when newer.
    pub fn device(
        &self,
        device: &str,
        minutes: u64,
        now_s: u64,
        latest: Option<&Telemetry>,
    ) -> Result<DeviceHistory, HistoryError> {
        let since = (now_s / 60).saturating_sub(minutes);
        let mut stmt = self.conn.prepare_cached(
            "SELECT sample FROM samples WHERE device = ?1 AND minute >= ?2 ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![device, since as i64], |r| r.get::<_, Vec<u8>>(0))?;
        let mut samples: Vec<Telemetry> = Vec::new();
        for row in rows {
            // A row this build cannot read (a future format) is skipped, not fatal.
            if let Ok(s) = decode::<Telemetry>(&row?) {
                samples.push(s);
            }
        }
        if let Some(l) = latest.filter(|l| samples.last().is_none_or(|s| s.seq < l.seq)) {
            samples.push(l.clone());
        }
        let points = samples
            .iter()
            .enumerate()
            .map(|(i, s)| history_point(s, i.checked_sub(1).map(|p| &samples[p])))
            .collect();
        Ok(DeviceHistory {
            device: device.to_owned(),
            points,
        })
    }

    /// Whether any row exists for `device` (tests and diagnostics).
    pub fn has_rows(&self, device: &str) -> Result<bool, HistoryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM samples WHERE device = ?1 LIMIT 1",
                [device],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}
