//! The fleet store: SQLite (WAL) in `<data_dir>/fleet.db`. The source of truth for
//! devices, deployments, placement, each device's signed desired state and generation,
//! the last status of each device, events and counters.
//!
//! This module only reads and writes rows: it never decides what a row should say
//! (that is the controller's job) and never talks to the network. Rows of `desired` are
//! never deleted, so a device's generation can never go back or be reused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use drover_protocol::DeviceStatus;
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("fleet store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("fleet store: corrupt {what} row for {key}: {source}")]
    Corrupt {
        what: &'static str,
        key: String,
        source: serde_json::Error,
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

/// Events kept in total; older ones are pruned.
const MAX_EVENTS: i64 = 10_000;

pub struct DeviceRow {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub credential: String,
    pub created_ms: u64,
}

/// A device's current desired state as stored: `workloads` is the canonical encoding the
/// controller compares, `payload` the signed MQTT message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRow {
    pub generation: u64,
    pub workloads: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct StatusRow {
    pub status: Option<DeviceStatus>,
    pub last_seen_ms: u64,
    /// Last presence message: `Some(true)` online, `Some(false)` offline, `None` never seen.
    pub presence: Option<bool>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EventRow {
    pub ts_ms: u64,
    pub kind: String,
    pub name: String,
    pub message: String,
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
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
                Ok(v)
            }
            Err(e) => {
                // A failed rollback leaves the transaction open; the next BEGIN reports it.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    // --- devices -------------------------------------------------------------------

    /// Inserts a device; `false` when one of that name exists (nothing changed).
    pub fn insert_device(&self, row: &DeviceRow) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO devices (name, labels, credential, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![row.name, labels_json(&row.labels), row.credential, row.created_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Replaces a device's labels; `false` when there is no such device.
    pub fn set_labels(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE devices SET labels = ?2 WHERE name = ?1",
            params![name, labels_json(labels)],
        )?;
        Ok(n == 1)
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, labels, credential, created_ms FROM devices ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, labels, credential, created) = row?;
            let labels = serde_json::from_str(&labels).map_err(|source| StoreError::Corrupt {
                what: "device labels",
                key: name.clone(),
                source,
            })?;
            out.push(DeviceRow {
                name,
                labels,
                credential,
                created_ms: created as u64,
            });
        }
        Ok(out)
    }

    // --- deployments ---------------------------------------------------------------

    /// Inserts or replaces a deployment; `true` when it was new or its spec changed.
    pub fn upsert_deployment(
        &self,
        name: &str,
        spec: &str,
        source: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let old: Option<String> = self
            .conn
            .query_row(
                "SELECT spec FROM deployments WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if old.as_deref() == Some(spec) {
            return Ok(false);
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO deployments (name, spec, source, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, spec, source, now_ms as i64],
        )?;
        Ok(true)
    }

    /// Deletes a deployment and its placement; `false` when there was none.
    pub fn delete_deployment(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM placement WHERE deployment = ?1", [name])?;
        let n = self
            .conn
            .execute("DELETE FROM deployments WHERE name = ?1", [name])?;
        Ok(n == 1)
    }

    /// `(name, spec JSON, source)` of every deployment, by name.
    pub fn deployments(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, spec, source FROM deployments ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- placement -----------------------------------------------------------------

    pub fn placement(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT deployment, device FROM placement")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            let (dep, dev) = row?;
            out.entry(dep).or_default().insert(dev);
        }
        Ok(out)
    }

    /// Replaces the whole placement table.
    pub fn set_placement(
        &self,
        placement: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM placement", [])?;
        let mut stmt = self
            .conn
            .prepare("INSERT INTO placement (deployment, device) VALUES (?1, ?2)")?;
        for (dep, devices) in placement {
            for dev in devices {
                stmt.execute(params![dep, dev])?;
            }
        }
        Ok(())
    }

    // --- desired -------------------------------------------------------------------

    pub fn desired(&self, device: &str) -> Result<Option<DesiredRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT generation, workloads, payload FROM desired WHERE device = ?1",
                [device],
                |r| {
                    Ok(DesiredRow {
                        generation: r.get::<_, i64>(0)? as u64,
                        workloads: r.get(1)?,
                        payload: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every stored desired state, by device name.
    pub fn all_desired(&self) -> Result<Vec<(String, DesiredRow)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT device, generation, workloads, payload FROM desired ORDER BY device",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                DesiredRow {
                    generation: r.get::<_, i64>(1)? as u64,
                    workloads: r.get(2)?,
                    payload: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn put_desired(
        &self,
        device: &str,
        row: &DesiredRow,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO desired (device, generation, workloads, payload, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                device,
                row.generation as i64,
                row.workloads,
                row.payload,
                now_ms as i64
            ],
        )?;
        Ok(())
    }

    // --- status --------------------------------------------------------------------

    pub fn put_status(&self, status: &DeviceStatus, seen_ms: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(status).map_err(|source| StoreError::Corrupt {
            what: "status",
            key: status.device.to_string(),
            source,
        })?;
        self.conn.execute(
            "INSERT INTO status (device, status, last_seen_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(device) DO UPDATE SET status = ?2, last_seen_ms = ?3",
            params![status.device.as_str(), json, seen_ms as i64],
        )?;
        Ok(())
    }

    pub fn set_presence(&self, device: &str, online: bool) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO status (device, presence) VALUES (?1, ?2)
             ON CONFLICT(device) DO UPDATE SET presence = ?2",
            params![device, online],
        )?;
        Ok(())
    }

    /// One device's last status row.
    pub fn status(&self, device: &str) -> Result<Option<StatusRow>, StoreError> {
        let raw = self
            .conn
            .query_row(
                "SELECT device, status, last_seen_ms, presence FROM status WHERE device = ?1",
                [device],
                raw_status,
            )
            .optional()?;
        raw.map(decode_status)
            .transpose()
            .map(|r| r.map(|(_, row)| row))
    }

    /// Every device's last status row, by device name.
    pub fn statuses(&self) -> Result<BTreeMap<String, StatusRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT device, status, last_seen_ms, presence FROM status")?;
        let rows = stmt.query_map([], raw_status)?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (device, row) = decode_status(row?)?;
            out.insert(device, row);
        }
        Ok(out)
    }

    // --- events and counters -------------------------------------------------------

    pub fn add_event(
        &self,
        ts_ms: u64,
        kind: &str,
        name: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO events (ts_ms, kind, name, message) VALUES (?1, ?2, ?3, ?4)",
            params![ts_ms as i64, kind, name, message],
        )?;
        let id = self.conn.last_insert_rowid();
        if id % 1000 == 0 {
            self.conn
                .execute("DELETE FROM events WHERE id <= ?1", [id - MAX_EVENTS])?;
        }
        Ok(())
    }

    /// The last `limit` events of one object, oldest first.
    pub fn events(&self, kind: &str, name: &str, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT ts_ms, kind, name, message FROM events WHERE kind = ?1 AND name = ?2
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![kind, name, limit], |r| {
            Ok(EventRow {
                ts_ms: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                name: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        let mut out: Vec<EventRow> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    pub fn bump_counter(&self, name: &str, by: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = value + ?2",
            params![name, by as i64],
        )?;
        Ok(())
    }

    pub fn counters(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, value FROM counters")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

type RawStatus = (String, Option<String>, i64, Option<bool>);

fn raw_status(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawStatus> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn decode_status(
    (device, json, seen, presence): RawStatus,
) -> Result<(String, StatusRow), StoreError> {
    let status = match json {
        Some(j) => Some(
            serde_json::from_str(&j).map_err(|source| StoreError::Corrupt {
                what: "status",
                key: device.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let row = StatusRow {
        status,
        last_seen_ms: seen as u64,
        presence,
    };
    Ok((device, row))
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
