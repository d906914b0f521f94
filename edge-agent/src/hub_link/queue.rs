//! The bounded outbox of status snapshots between the agent and the MQTT link.
//!
//! Fixed storage (`heapless::Deque`), a runtime limit from the config; when full the
//! oldest snapshot is dropped and counted. It must never grow, block or lose the newest
//! snapshot: statuses are full snapshots, so the newest alone is enough to heal the hub.

use drover_protocol::DeviceStatus;
use heapless::Deque;

use super::config::MAX_STATUS_QUEUE;

const CAPACITY: usize = MAX_STATUS_QUEUE as usize;

/// Status snapshots waiting to be sent, oldest first.
#[derive(Debug)]
pub struct StatusQueue {
    items: Deque<DeviceStatus, CAPACITY>,
    limit: usize,
}

impl StatusQueue {
    /// A queue holding at most `limit` snapshots (clamped to `1..=MAX_STATUS_QUEUE`).
    pub fn new(limit: u32) -> Self {
        StatusQueue {
            items: Deque::new(),
            limit: (limit as usize).clamp(1, CAPACITY),
        }
    }

    /// Appends `status`; returns how many old snapshots were dropped to make room (0 or 1).
    pub fn push(&mut self, status: DeviceStatus) -> u64 {
        let mut dropped = 0;
        while self.items.len() >= self.limit {
            self.items.pop_front();
            dropped += 1;
        }
        // Cannot fail: the loop above made room and limit <= CAPACITY.
        let _ = self.items.push_back(status);
        dropped
    }

    /// The oldest snapshot, removed.
    pub fn pop(&mut self) -> Option<DeviceStatus> {
        self.items.pop_front()
    }

    /// Puts a snapshot that could not be handed over back at the front; if the queue
    /// filled up meanwhile, `status` is the oldest and is the one dropped (returns true).
    pub fn unpop(&mut self, status: DeviceStatus) -> bool {
        if self.items.len() >= self.limit {
            return true;
        }
        self.items.push_front(status).is_err()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use drover_protocol::Name;

    use super::*;

    fn st(generation: u64) -> DeviceStatus {
        DeviceStatus {
            device: Name::new("pi").unwrap(),
            observed_generation: generation,
            time_ms: 0,
            workloads: vec![],
            capacity: Default::default(),
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut q = StatusQueue::new(3);
        let dropped: u64 = (1..=5).map(|g| q.push(st(g))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(q.len(), 3);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop())
            .map(|s| s.observed_generation)
            .collect();
        assert_eq!(order, [3, 4, 5]);
        assert!(q.is_empty());
    }

    #[test]
    fn the_limit_is_clamped_to_the_storage() {
        let mut q = StatusQueue::new(1000);
        let dropped: u64 = (0..100).map(|g| q.push(st(g))).sum();
        assert_eq!(q.len(), CAPACITY);
        assert_eq!(dropped, 100 - CAPACITY as u64);
        let mut one = StatusQueue::new(0);
        assert_eq!(one.push(st(1)) + one.push(st(2)), 1);
        assert_eq!(one.pop().map(|s| s.observed_generation), Some(2));
    }

    #[test]
    fn unpop_returns_a_snapshot_to_the_front_unless_full() {
        let mut q = StatusQueue::new(2);
        q.push(st(1));
        q.push(st(2));
        let first = q.pop().unwrap();
        assert!(!q.unpop(first));
        assert_eq!(q.pop().map(|s| s.observed_generation), Some(1));
        q.push(st(3));
        assert!(
            q.unpop(st(0)),
            "full: the returned snapshot is the oldest, dropped"
        );
        assert_eq!(q.len(), 2);
    }
}
