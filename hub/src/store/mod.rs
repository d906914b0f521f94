//! The fleet store: SQLite (WAL) in `<data_dir>/fleet.db`. The source of truth for
//! devices, deployments, placement, each device's signed desired state and generation,
//! the last status of each device, events and counters.
//!
//! This module only reads and writes typed rows ([`rows`]): it never decides what a row
//! should say (that is the controller's job) and never talks to the network. Rows of
//! `desired` are never deleted, so a device's generation can never go back or be reused.
//! The controller owns the one writing connection; the API reads through its own
//! read-only connection ([`Store::open_read`]), which WAL lets run beside the writer.

mod clients;
mod commands;
mod fleet;
mod freshness;
mod revisions;
pub mod rows;
mod secrets;
mod status;
pub mod tokens;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::path::Path;

use rusqlite::Connection;

pub use freshness::SeqFloors;
pub use rows::{
    ClientRow, DeploymentRow, DesiredRow, DeviceRow, Event, EventReason, ObjectKind, RevisionRow,
    RolloutStateRow, StatusRow,
};
pub use secrets::ConfigRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("fleet store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("fleet store: corrupt {what} row for {key}: {message}")]
    Corrupt {
        what: &'static str,
        key: String,
        message: String,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY, labels TEXT NOT NULL, credential TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, source TEXT NOT NULL,
    updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS placement (
    deployment TEXT NOT NULL, device TEXT NOT NULL, PRIMARY KEY (deployment, device));
CREATE TABLE IF NOT EXISTS desired (
    device TEXT PRIMARY KEY, generation INTEGER NOT NULL, workloads BLOB NOT NULL,
    payload BLOB NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS status (
    device TEXT PRIMARY KEY, status TEXT, last_seen_ms INTEGER NOT NULL DEFAULT 0,
    presence INTEGER);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_object ON events (kind, name, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Events kept in total (a 10,000-device apply writes one per device); older ones are
/// pruned.
const MAX_EVENTS: i64 = 100_000;

pub struct Store {
    conn: Connection,
    /// Transactions committed through [`Store::atomically`] since open.
    commits: Cell<u64>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, in WAL mode, for writing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Store {
            conn,
            commits: Cell::new(0),
        })
    }

    /// A read-only connection to a store that [`Store::open`] created.
    pub fn open_read(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Store {
            conn,
            commits: Cell::new(0),
        })
    }

    /// Runs `f` in one transaction: everything it wrote is kept only if it returns `Ok`.
    pub fn atomically<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::from)?;
        match f(self) {
            Ok(v) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(StoreError::from)?;
                self.commits.set(self.commits.get() + 1);
                Ok(v)
            }
            Err(e) => {
                // A failed rollback leaves the transaction open; the next BEGIN reports it.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Like [`Store::atomically`], but the commit is on disk (fsync) before it returns:
    /// used before publishing desired states, so that a device can never hold a
    /// generation that a power cut took back from the store.
    pub fn durably<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(StoreError::from)?;
        let result = self.atomically(f);
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(StoreError::from)?;
        result
    }

    /// Transactions committed through this connection since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.get()
    }

    // --- events and counters -------------------------------------------------------

    pub fn add_event(&self, e: &Event) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (ts_ms, kind, name, reason, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        stmt.execute(rusqlite::params![
            e.ts_ms as i64,
            e.object.as_str(),
            e.name,
            e.reason.as_str(),
            e.message
        ])?;
        let id = self.conn.last_insert_rowid();
        if id % 1000 == 0 {
            self.conn
                .execute("DELETE FROM events WHERE id <= ?1", [id - MAX_EVENTS])?;
        }
        Ok(())
    }

    /// The last `limit` events of one object, oldest first.
    pub fn events(
        &self,
        object: ObjectKind,
        name: &str,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts_ms, name, reason, message FROM events WHERE kind = ?1 AND name = ?2
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(rusqlite::params![object.as_str(), name, limit], |r| {
            Ok(Event {
                ts_ms: r.get::<_, i64>(0)? as u64,
                object,
                name: r.get(1)?,
                reason: EventReason::parse(&r.get::<_, String>(2)?),
                message: r.get(3)?,
            })
        })?;
        let mut out: Vec<Event> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    pub fn bump_counter(&self, name: &str, by: u64) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = value + ?2",
        )?;
        stmt.execute(rusqlite::params![name, by as i64])?;
        Ok(())
    }

    pub fn counters(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, value FROM counters")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Schema changes since the first release, applied at open.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_reason: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'reason'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_reason {
        conn.execute_batch("ALTER TABLE events ADD COLUMN reason TEXT NOT NULL DEFAULT 'Unknown'")?;
    }
    revisions::migrate(conn)?;
    freshness::migrate(conn)?;
    clients::migrate(conn)?;
    secrets::migrate(conn)?;
    tokens::migrate(conn)
}
