//! Command ids: handed out from memory, reserved in blocks in the store, never below the
//! clock (Unix ms × 1000), so that ids keep rising for the agents even if the hub's store
//! is lost or restored from a backup.

use crate::store::{Store, StoreError};

/// Ids reserved with one durable write.
const BLOCK: u64 = 1000;

pub struct IdAllocator {
    store: Store,
    next: u64,
    /// First id not reserved.
    end: u64,
}

impl IdAllocator {
    pub fn new(store: Store) -> IdAllocator {
        IdAllocator {
            store,
            next: 0,
            end: 0,
        }
    }

    /// The next id, above every id handed out before (by this hub, ever).
    pub fn next(&mut self) -> Result<u64, StoreError> {
        if self.next >= self.end {
            let floor = crate::now_ms().saturating_mul(1000);
            self.next = self.store.reserve_command_ids(BLOCK, floor)?;
            self.end = self.next + BLOCK;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_rise_across_blocks_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fleet.db");
        let mut a = IdAllocator::new(Store::open(&db).unwrap());
        let first = a.next().unwrap();
        assert!(first >= 1_600_000_000_000_000, "{first}");
        let mut last = first;
        for _ in 0..BLOCK + 5 {
            let id = a.next().unwrap();
            assert!(id > last);
            last = id;
        }
        drop(a);
        let mut b = IdAllocator::new(Store::open(&db).unwrap());
        assert!(b.next().unwrap() > last);
    }
}
