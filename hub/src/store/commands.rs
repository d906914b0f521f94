//! The hub's command id counter (a `counters` row): ids of signed commands rise strictly
//! across hub restarts, since agents refuse any id not above the last one they accepted.

use super::{Store, StoreError};

/// The `counters` row holding the next command id not yet handed out.
const NEXT_COMMAND_ID: &str = "next_command_id";

impl Store {
    /// Reserves `n` command ids, at least `floor`, and returns the first: the counter is
    /// on disk before this returns, so a crash never hands the same id out twice.
    pub fn reserve_command_ids(&self, n: u64, floor: u64) -> Result<u64, StoreError> {
        self.durably(|s| {
            let next: i64 = s
                .conn
                .query_row(
                    "SELECT value FROM counters WHERE name = ?1",
                    [NEXT_COMMAND_ID],
                    |r| r.get(0),
                )
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(1),
                    e => Err(e),
                })?;
            let first = (next.max(1) as u64).max(floor);
            s.conn.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = ?2",
                rusqlite::params![NEXT_COMMAND_ID, (first + n) as i64],
            )?;
            Ok(first)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ids_never_repeat_across_reopens_and_respect_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fleet.db");
        let store = Store::open(&db).unwrap();
        assert_eq!(store.reserve_command_ids(10, 0).unwrap(), 1);
        assert_eq!(store.reserve_command_ids(10, 0).unwrap(), 11);
        drop(store);
        let store = Store::open(&db).unwrap();
        assert_eq!(store.reserve_command_ids(10, 5).unwrap(), 21);
        assert_eq!(store.reserve_command_ids(10, 1000).unwrap(), 1000);
        assert_eq!(store.reserve_command_ids(1, 0).unwrap(), 1010);
    }
}
