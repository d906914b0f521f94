//! Revisions of each Deployment's template and the state of its rollout: the rows the
//! rollout controller is loaded from and commits to. A revision row is written once and
//! never changed; they go only with their Deployment.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::fleet::corrupt;
use super::rows::{RevisionRow, RolloutStateRow};
use super::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS revisions (
    deployment TEXT NOT NULL, revision INTEGER NOT NULL, template TEXT NOT NULL,
    written_images TEXT NOT NULL, source TEXT NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (deployment, revision));
";

/// Adds the revision tables and columns, and makes the template of every Deployment stored
/// before revisions existed its revision 1.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    let has_revision: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('deployments') WHERE name = 'revision'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_revision {
        conn.execute_batch(
            "ALTER TABLE deployments ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE deployments ADD COLUMN rollout TEXT;",
        )?;
    }
    let mut stmt =
        conn.prepare("SELECT name, spec, source, updated_ms FROM deployments WHERE revision = 0")?;
    let old: Vec<(String, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (name, spec, source, updated) in old {
        let d: crate::fleet::Deployment =
            serde_json::from_str(&spec).map_err(|e| corrupt("deployment", &name, e))?;
        let template =
            serde_json::to_string(&d.template).map_err(|e| corrupt("revision", &name, e))?;
        conn.execute(
            "INSERT OR IGNORE INTO revisions VALUES (?1, 1, ?2, '{}', ?3, ?4)",
            params![name, template, source, updated],
        )?;
        conn.execute(
            "UPDATE deployments SET revision = 1 WHERE name = ?1",
            [&name],
        )?;
    }
    Ok(())
}

impl Store {
    pub fn add_revision(&self, row: &RevisionRow) -> Result<(), StoreError> {
        let key = &row.deployment;
        let bad = |e: serde_json::Error| corrupt("revision", key, e);
        let template = serde_json::to_string(&row.template).map_err(bad)?;
        let images = serde_json::to_string(&row.written_images).map_err(bad)?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO revisions
             (deployment, revision, template, written_images, source, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        stmt.execute(params![
            key,
            row.revision as i64,
            template,
            images,
            row.source,
            row.created_ms as i64
        ])?;
        Ok(())
    }

    /// Every revision of one Deployment, oldest first.
    pub fn revisions(&self, deployment: &str) -> Result<Vec<RevisionRow>, StoreError> {
        self.revisions_where("WHERE deployment = ?1", params![deployment])
    }

    /// One revision of one Deployment.
    pub fn revision(
        &self,
        deployment: &str,
        revision: u64,
    ) -> Result<Option<RevisionRow>, StoreError> {
        let rows = self.revisions_where(
            "WHERE deployment = ?1 AND revision = ?2",
            params![deployment, revision as i64],
        )?;
        Ok(rows.into_iter().next())
    }

    fn revisions_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<RevisionRow>, StoreError> {
        let sql = format!(
            "SELECT deployment, revision, template, written_images, source, created_ms
             FROM revisions {filter} ORDER BY deployment, revision"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let raw = stmt.query_map(p, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in raw {
            let (deployment, revision, template, images, source, created) = row?;
            let bad = |e: serde_json::Error| corrupt("revision", &deployment, e);
            out.push(RevisionRow {
                template: serde_json::from_str(&template).map_err(bad)?,
                written_images: serde_json::from_str(&images).map_err(bad)?,
                deployment,
                revision: revision as u64,
                source,
                created_ms: created as u64,
            });
        }
        Ok(out)
    }

    /// Sets a Deployment's current revision and rollout (`None`: no rollout).
    pub fn set_rollout_state(
        &self,
        deployment: &str,
        row: &RolloutStateRow,
    ) -> Result<(), StoreError> {
        let rollout = row
            .rollout
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt("rollout", deployment, e))?;
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE deployments SET revision = ?2, rollout = ?3 WHERE name = ?1")?;
        stmt.execute(params![deployment, row.revision as i64, rollout])?;
        Ok(())
    }

    /// Every Deployment's revision and rollout, by name.
    pub fn rollout_states(&self) -> Result<BTreeMap<String, RolloutStateRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, revision, rollout FROM deployments")?;
        let raw = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in raw {
            let (name, revision, rollout) = row?;
            let rollout = rollout
                .map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| corrupt("rollout", &name, e))?;
            let row = RolloutStateRow {
                revision: revision as u64,
                rollout,
            };
            out.insert(name, row);
        }
        Ok(out)
    }
}
