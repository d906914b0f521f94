//! Join tokens, the keys of devices that enrolled with one, and revoked devices.
//!
//! A token row holds only the SHA-256 of its secret; the secret itself is never stored.
//! An enrolled device's row in `devices` has an empty credential and its keys here
//! (passwords, the agreed status key, the sealing public key): the hub never saw its
//! credential. Revoked devices keep their `devices` row (for audit) and get a row in
//! `revoked_devices`. Tables added to older stores at open; older rows load unchanged.
//! This module never decides whether a token may be used (`enroll::check`).

use std::collections::BTreeMap;

use drover_protocol::keys::{DeviceKeys, SealPublicKey, StatusKey, parse_hex32};
use rusqlite::{Connection, OptionalExtension, params};

use super::fleet::corrupt;
use super::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS join_tokens (
    id TEXT PRIMARY KEY, secret_sha256 BLOB NOT NULL, labels TEXT NOT NULL,
    expires_ms INTEGER NOT NULL, uses_left INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    revoked_ms INTEGER);
CREATE TABLE IF NOT EXISTS device_keys (
    name TEXT PRIMARY KEY, mqtt_password TEXT NOT NULL, registry_password TEXT NOT NULL,
    status_key TEXT NOT NULL, seal_public TEXT NOT NULL, token_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_devices (name TEXT PRIMARY KEY, revoked_ms INTEGER NOT NULL);
";

/// Adds the enrollment tables to a store created before enrollment existed.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One join token as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub secret_sha256: [u8; 32],
    pub labels: BTreeMap<String, String>,
    pub expires_ms: u64,
    pub uses_left: u32,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
}

impl Store {
    /// Inserts a token; `false` when one with that id exists (nothing changed).
    pub fn insert_token(&self, t: &TokenRow) -> Result<bool, StoreError> {
        let labels = serde_json::to_string(&t.labels).map_err(|e| corrupt("token", &t.id, e))?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO join_tokens
             (id, secret_sha256, labels, expires_ms, uses_left, created_ms, revoked_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
            params![
                t.id,
                &t.secret_sha256[..],
                labels,
                t.expires_ms as i64,
                t.uses_left,
                t.created_ms as i64
            ],
        )?;
        Ok(n == 1)
    }

    /// Every token, newest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.tokens_where("ORDER BY created_ms DESC, id", [])
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(self.tokens_where("WHERE id = ?1", [id])?.into_iter().next())
    }

    /// Marks a token revoked (the first revocation time is kept); `false` when none.
    pub fn revoke_token(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE join_tokens SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1",
            params![id, now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Takes one use of a token whose uses are left; `false` when none was left (call
    /// inside the transaction that registers the device, so the two go together).
    pub fn take_token_use(&self, id: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ?1 AND uses_left > 0",
            [id],
        )?;
        Ok(n == 1)
    }

    fn tokens_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT id, secret_sha256, labels, expires_ms, uses_left, created_ms, revoked_ms
             FROM join_tokens {filter}"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let raw = stmt.query_map(p, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                (
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ),
                r.get::<_, Option<i64>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in raw {
            let (id, hash, labels, (expires, uses, created), revoked) = row?;
            let secret_sha256 = hash
                .try_into()
                .map_err(|_| corrupt("token", &id, "secret hash is not 32 bytes"))?;
            let labels = serde_json::from_str(&labels).map_err(|e| corrupt("token", &id, e))?;
            out.push(TokenRow {
                id,
                secret_sha256,
                labels,
                expires_ms: expires as u64,
                uses_left: uses.max(0) as u32,
                created_ms: created as u64,
                revoked_ms: revoked.map(|v| v as u64),
            });
        }
        Ok(out)
    }

    /// Stores the keys of a device that enrolled with token `token_id`.
    pub fn insert_device_keys(
        &self,
        name: &str,
        keys: &DeviceKeys,
        token_id: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO device_keys
             (name, mqtt_password, registry_password, status_key, seal_public, token_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                keys.mqtt_password,
                keys.registry_password,
                drover_protocol::join::hex(keys.status_key.as_bytes()),
                keys.seal_public.to_hex(),
                token_id
            ],
        )?;
        Ok(())
    }

    /// The keys of every enrolled device, by name.
    pub fn device_keys(&self) -> Result<BTreeMap<String, DeviceKeys>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, mqtt_password, registry_password, status_key, seal_public
             FROM device_keys",
        )?;
        let raw = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in raw {
            let (name, mqtt_password, registry_password, status, seal) = row?;
            let status_key = parse_hex32(&status)
                .map(StatusKey::from_bytes)
                .ok_or_else(|| corrupt("device_keys", &name, "status key is not 64 hex"))?;
            let seal_public = SealPublicKey::from_hex(&seal)
                .ok_or_else(|| corrupt("device_keys", &name, "seal key is not 64 hex"))?;
            let keys = DeviceKeys {
                mqtt_password,
                registry_password,
                status_key,
                seal_public,
            };
            out.insert(name, keys);
        }
        Ok(out)
    }

    /// Marks a device revoked; `false` when it already was.
    pub fn revoke_device(&self, name: &str, now_ms: u64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO revoked_devices (name, revoked_ms) VALUES (?1, ?2)",
            params![name, now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Revoked devices → when.
    pub fn revoked_devices(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, revoked_ms FROM revoked_devices")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When `name` was revoked, if it was.
    pub fn device_revoked(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT revoked_ms FROM revoked_devices WHERE name = ?1")?;
        Ok(stmt
            .query_row([name], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|v| v as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("fleet.db")).unwrap();
        (dir, s)
    }

    fn token(id: &str, uses: u32) -> TokenRow {
        TokenRow {
            id: id.into(),
            secret_sha256: [5; 32],
            labels: BTreeMap::from([("site".into(), "lab".into())]),
            expires_ms: 2_000,
            uses_left: uses,
            created_ms: 1_000,
            revoked_ms: None,
        }
    }

    #[test]
    fn tokens_are_stored_without_secret_and_used_up_atomically() {
        let (_d, s) = store();
        assert!(s.insert_token(&token("aaaaaaaaaaaa", 2)).unwrap());
        assert!(!s.insert_token(&token("aaaaaaaaaaaa", 9)).unwrap());
        assert!(s.take_token_use("aaaaaaaaaaaa").unwrap());
        assert!(s.take_token_use("aaaaaaaaaaaa").unwrap());
        assert!(!s.take_token_use("aaaaaaaaaaaa").unwrap());
        assert!(!s.take_token_use("nonexistent0").unwrap());
        let t = s.token("aaaaaaaaaaaa").unwrap().unwrap();
        assert_eq!((t.uses_left, t.labels.len()), (0, 1));
        assert!(s.revoke_token("aaaaaaaaaaaa", 1_500).unwrap());
        assert!(s.revoke_token("aaaaaaaaaaaa", 1_900).unwrap());
        assert_eq!(s.tokens().unwrap()[0].revoked_ms, Some(1_500));
        assert!(!s.revoke_token("nonexistent0", 1).unwrap());
    }

    #[test]
    fn enrolled_keys_and_revocations_load_back() {
        let (_d, s) = store();
        let keys = DeviceKeys::from_credential(b"x");
        s.insert_device_keys("pi-9", &keys, "aaaaaaaaaaaa").unwrap();
        assert_eq!(s.device_keys().unwrap()["pi-9"], keys);
        assert_eq!(s.device_revoked("pi-9").unwrap(), None);
        assert!(s.revoke_device("pi-9", 42).unwrap());
        assert!(!s.revoke_device("pi-9", 43).unwrap());
        assert_eq!(s.device_revoked("pi-9").unwrap(), Some(42));
        assert_eq!(s.revoked_devices().unwrap()["pi-9"], 42);
    }
}
