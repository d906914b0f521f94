//! Dashboard clients: broker logins that are not devices (`client add`). A client row is
//! only ever inserted or deleted whole; the names it shares with devices are checked by
//! the controller, not here.

use rusqlite::{Connection, OptionalExtension, params};

use super::fleet::corrupt;
use super::rows::ClientRow;
use super::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clients (
    name TEXT PRIMARY KEY, credential TEXT NOT NULL, publish TEXT NOT NULL,
    subscribe TEXT NOT NULL, created_ms INTEGER NOT NULL);
";

/// Adds the clients table to a store created before clients existed.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

impl Store {
    /// Inserts a client; `false` when one of that name exists (nothing changed).
    pub fn insert_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        let json =
            |v: &[String]| serde_json::to_string(v).map_err(|e| corrupt("client", &row.name, e));
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO clients (name, credential, publish, subscribe, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let n = stmt.execute(params![
            row.name,
            row.credential,
            json(&row.publish)?,
            json(&row.subscribe)?,
            row.created_ms as i64
        ])?;
        Ok(n == 1)
    }

    /// Deletes a client; `false` when there was none of that name.
    pub fn delete_client(&self, name: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM clients WHERE name = ?1")?;
        Ok(stmt.execute([name])? == 1)
    }

    /// Every client, by name.
    pub fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        self.clients_where("", [])
    }

    pub fn client(&self, name: &str) -> Result<Option<ClientRow>, StoreError> {
        Ok(self
            .clients_where("WHERE name = ?1", [name])?
            .into_iter()
            .next())
    }

    /// Whether a device of that name is registered (clients and devices share names).
    pub fn device_exists(&self, name: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM devices WHERE name = ?1")?;
        Ok(stmt.query_row([name], |_| Ok(())).optional()?.is_some())
    }

    fn clients_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<ClientRow>, StoreError> {
        let sql = format!(
            "SELECT name, credential, publish, subscribe, created_ms FROM clients {filter} ORDER BY name"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let raw = stmt.query_map(p, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in raw {
            let (name, credential, publish, subscribe, created) = row?;
            let list = |s: &str| -> Result<Vec<String>, StoreError> {
                serde_json::from_str(s).map_err(|e| corrupt("client", &name, e))
            };
            out.push(ClientRow {
                publish: list(&publish)?,
                subscribe: list(&subscribe)?,
                name,
                credential,
                created_ms: created as u64,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> ClientRow {
        ClientRow {
            name: name.to_owned(),
            credential: format!("{name}-secret"),
            publish: vec!["drover/v1/sensors/#".to_owned()],
            subscribe: vec![],
            created_ms: 7,
        }
    }

    #[test]
    fn clients_are_inserted_once_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("fleet.db")).unwrap();
        assert!(s.insert_client(&row("dash")).unwrap());
        assert!(!s.insert_client(&row("dash")).unwrap());
        assert!(s.insert_client(&row("sensor")).unwrap());
        assert_eq!(s.clients().unwrap(), vec![row("dash"), row("sensor")]);
        assert_eq!(s.client("dash").unwrap(), Some(row("dash")));
        assert!(s.delete_client("dash").unwrap());
        assert!(!s.delete_client("dash").unwrap());
        assert_eq!(s.clients().unwrap(), vec![row("sensor")]);
        assert!(!s.device_exists("sensor").unwrap());
    }

    #[test]
    fn a_store_from_before_clients_gets_the_table_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE clients").unwrap();
        drop(conn);
        let s = Store::open(&path).unwrap();
        assert!(s.clients().unwrap().is_empty());
        assert!(s.insert_client(&row("dash")).unwrap());
    }
}
