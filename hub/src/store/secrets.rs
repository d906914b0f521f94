//! Secrets and ConfigMaps: one row per object with its keys. Secret values are stored as
//! the `SecretBox` sealed them (nonce, ciphertext, tag); ConfigMap values as they are. The
//! store never sees a Secret's value in clear.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{Connection, params};

use super::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS config_objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, secret_type TEXT, data TEXT NOT NULL,
    updated_ms INTEGER NOT NULL, PRIMARY KEY (kind, name));
";

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// A stored Secret or ConfigMap: `data` holds sealed values for a Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigRow {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    pub name: String,
    pub secret_type: Option<String>,
    pub data: BTreeMap<String, Vec<u8>>,
    pub updated_ms: u64,
}

impl std::fmt::Debug for ConfigRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigRow")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn put_config_object(&self, row: &ConfigRow) -> Result<(), StoreError> {
        let data: BTreeMap<&String, String> = row
            .data
            .iter()
            .map(|(k, v)| (k, STANDARD.encode(v)))
            .collect();
        let data = serde_json::to_string(&data).map_err(|e| StoreError::Corrupt {
            what: "config object",
            key: row.name.clone(),
            message: e.to_string(),
        })?;
        self.conn.execute(
            "INSERT OR REPLACE INTO config_objects (kind, name, secret_type, data, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                row.kind,
                row.name,
                row.secret_type,
                data,
                row.updated_ms as i64
            ],
        )?;
        Ok(())
    }

    pub fn delete_config_object(&self, kind: &str, name: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM config_objects WHERE kind = ?1 AND name = ?2",
            params![kind, name],
        )?;
        Ok(())
    }

    /// Every stored object, by kind then name.
    pub fn config_objects(&self) -> Result<Vec<ConfigRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT kind, name, secret_type, data, updated_ms FROM config_objects ORDER BY kind, name",
        )?;
        let rows: Vec<(String, String, Option<String>, String, i64)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(kind, name, secret_type, data, updated)| {
                let corrupt = |message: String| StoreError::Corrupt {
                    what: "config object",
                    key: format!("{kind}/{name}"),
                    message,
                };
                let map: BTreeMap<String, String> =
                    serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?;
                let data = map
                    .into_iter()
                    .map(|(k, v)| {
                        let bytes = STANDARD
                            .decode(v)
                            .map_err(|_| corrupt(format!("key {k}")))?;
                        Ok((k, bytes))
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok(ConfigRow {
                    kind,
                    name,
                    secret_type,
                    data,
                    updated_ms: updated.max(0) as u64,
                })
            })
            .collect()
    }
}
