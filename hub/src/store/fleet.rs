//! Devices, deployments, placement and desired states: the rows the fleet snapshot is
//! loaded from and committed to. Statements are cached: a 10,000-device commit reuses
//! one prepared statement per table.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{OptionalExtension, params};

use super::rows::{DeploymentRow, DesiredRow, DeviceRow};
use super::{Store, StoreError};

impl Store {
    // --- devices -------------------------------------------------------------------

    /// Inserts a device; `false` when one of that name exists (nothing changed).
    pub fn insert_device(&self, row: &DeviceRow) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO devices (name, labels, credential, created_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let n = stmt.execute(params![
            row.name,
            labels_json(&row.labels),
            row.credential,
            row.created_ms as i64
        ])?;
        Ok(n == 1)
    }

    /// Replaces a device's labels; `false` when there is no such device.
    pub fn set_labels(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE devices SET labels = ?2 WHERE name = ?1")?;
        Ok(stmt.execute(params![name, labels_json(labels)])? == 1)
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.devices_where("", [])
    }

    pub fn device(&self, name: &str) -> Result<Option<DeviceRow>, StoreError> {
        Ok(self
            .devices_where("WHERE name = ?1", [name])?
            .into_iter()
            .next())
    }

    fn devices_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<DeviceRow>, StoreError> {
        let sql = format!(
            "SELECT name, labels, credential, created_ms FROM devices {filter} ORDER BY name"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(p, |r| {
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
            let labels =
                serde_json::from_str(&labels).map_err(|e| corrupt("device labels", &name, e))?;
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

    /// Inserts or replaces a deployment (its revision and rollout are kept: see
    /// [`Store::set_rollout_state`]).
    pub fn put_deployment(&self, row: &DeploymentRow) -> Result<(), StoreError> {
        let name = row.deployment.name.as_str();
        let spec =
            serde_json::to_string(&row.deployment).map_err(|e| corrupt("deployment", name, e))?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO deployments (name, spec, source, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET spec = ?2, source = ?3, updated_ms = ?4",
        )?;
        stmt.execute(params![name, spec, row.source, row.updated_ms as i64])?;
        Ok(())
    }

    /// Deletes a deployment, its placement and its revisions; `false` when there was none.
    pub fn delete_deployment(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM placement WHERE deployment = ?1", [name])?;
        self.conn
            .execute("DELETE FROM revisions WHERE deployment = ?1", [name])?;
        let n = self
            .conn
            .execute("DELETE FROM deployments WHERE name = ?1", [name])?;
        Ok(n == 1)
    }

    /// Every deployment, decoded, by name.
    pub fn deployments(&self) -> Result<Vec<DeploymentRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, spec, source, updated_ms FROM deployments ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, spec, source, updated) = row?;
            let deployment =
                serde_json::from_str(&spec).map_err(|e| corrupt("deployment", &name, e))?;
            out.push(DeploymentRow {
                deployment,
                source,
                updated_ms: updated as u64,
            });
        }
        Ok(out)
    }

    // --- placement -----------------------------------------------------------------

    pub fn placement(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT deployment, device FROM placement")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            let (dep, dev) = row?;
            out.entry(dep).or_default().insert(dev);
        }
        Ok(out)
    }

    /// Records that `deployment` runs on `device`.
    pub fn place(&self, deployment: &str, device: &str) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO placement (deployment, device) VALUES (?1, ?2)",
        )?;
        stmt.execute(params![deployment, device])?;
        Ok(())
    }

    /// Records that `deployment` no longer runs on `device`.
    pub fn unplace(&self, deployment: &str, device: &str) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM placement WHERE deployment = ?1 AND device = ?2")?;
        stmt.execute(params![deployment, device])?;
        Ok(())
    }

    // --- desired -------------------------------------------------------------------

    pub fn desired(&self, device: &str) -> Result<Option<DesiredRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT generation, workloads, payload FROM desired WHERE device = ?1",
        )?;
        Ok(stmt
            .query_row([device], |r| {
                Ok(DesiredRow {
                    generation: r.get::<_, i64>(0)? as u64,
                    workloads: r.get(1)?,
                    payload: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Every stored desired state, by device name.
    pub fn all_desired(&self) -> Result<Vec<(String, DesiredRow)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
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
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO desired (device, generation, workloads, payload, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        stmt.execute(params![
            device,
            row.generation as i64,
            row.workloads,
            row.payload,
            now_ms as i64
        ])?;
        Ok(())
    }
}

pub(super) fn corrupt(what: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        key: key.to_owned(),
        message: e.to_string(),
    }
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}
