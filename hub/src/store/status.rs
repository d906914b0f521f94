//! Last status and presence of each device. The controller writes a whole batch of
//! statuses in one transaction; the API reads them through its own connection.

use std::collections::BTreeMap;

use drover_protocol::DeviceStatus;
use rusqlite::{OptionalExtension, params};

use super::fleet::corrupt;
use super::rows::StatusRow;
use super::{Store, StoreError};

impl Store {
    pub fn put_status(&self, status: &DeviceStatus, seen_ms: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(status)
            .map_err(|e| corrupt("status", status.device.as_str(), e))?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO status (device, status, last_seen_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(device) DO UPDATE SET status = ?2, last_seen_ms = ?3",
        )?;
        stmt.execute(params![status.device.as_str(), json, seen_ms as i64])?;
        Ok(())
    }

    pub fn set_presence(&self, device: &str, online: bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO status (device, presence) VALUES (?1, ?2)
             ON CONFLICT(device) DO UPDATE SET presence = ?2",
        )?;
        stmt.execute(params![device, online])?;
        Ok(())
    }

    /// One device's last status row.
    pub fn status(&self, device: &str) -> Result<Option<StatusRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT device, status, last_seen_ms, presence FROM status WHERE device = ?1",
        )?;
        let raw = stmt.query_row([device], raw_status).optional()?;
        raw.map(decode_status)
            .transpose()
            .map(|r| r.map(|(_, row)| row))
    }

    /// Every device's last status row, by device name.
    pub fn statuses(&self) -> Result<BTreeMap<String, StatusRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device, status, last_seen_ms, presence FROM status")?;
        let rows = stmt.query_map([], raw_status)?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (device, row) = decode_status(row?)?;
            out.insert(device, row);
        }
        Ok(out)
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
        Some(j) => Some(serde_json::from_str(&j).map_err(|e| corrupt("status", &device, e))?),
        None => None,
    };
    let row = StatusRow {
        status,
        last_seen_ms: seen as u64,
        presence,
    };
    Ok((device, row))
}
