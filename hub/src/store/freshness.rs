//! The highest sequence number accepted per device for statuses and presence
//! (`drover_protocol::freshness`): what a replay must beat. Written in the same
//! transaction as the status batch that raised it, so a hub restart keeps refusing
//! replays of what it already accepted.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seq_floors (
    device TEXT PRIMARY KEY, status_seq INTEGER NOT NULL DEFAULT 0,
    presence_seq INTEGER NOT NULL DEFAULT 0);
";

/// Highest accepted sequence numbers of one device; 0 = none yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqFloors {
    pub status: u64,
    pub presence: u64,
}

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

impl Store {
    /// Records `floors` for `device` (sequence numbers are stored bit for bit in SQLite's
    /// signed integers).
    pub fn put_seq_floors(&self, device: &str, floors: SeqFloors) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO seq_floors (device, status_seq, presence_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT(device) DO UPDATE SET status_seq = ?2, presence_seq = ?3",
        )?;
        stmt.execute(params![
            device,
            floors.status as i64,
            floors.presence as i64
        ])?;
        Ok(())
    }

    /// Every device's floors.
    pub fn seq_floors(&self) -> Result<HashMap<String, SeqFloors>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device, status_seq, presence_seq FROM seq_floors")?;
        let rows = stmt.query_map([], |r| {
            let floors = SeqFloors {
                status: r.get::<_, i64>(1)? as u64,
                presence: r.get::<_, i64>(2)? as u64,
            };
            Ok((r.get::<_, String>(0)?, floors))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
