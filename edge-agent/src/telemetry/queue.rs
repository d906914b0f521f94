//! The bounded outbox of telemetry samples between the sampler and the MQTT link.
//!
//! Fixed storage (`heapless::Vec` of boxed samples: 8 bytes a slot whatever the limit),
//! a runtime limit from the config. When full it downsamples rather than loses: of the
//! oldest pair of samples (the incoming one included) taken in the same wall-clock minute,
//! the later one goes (counted as downsampled), so a long outage leaves one sample per
//! minute; only when no two share a minute is the oldest dropped, counted in
//! [`Telemetry::dropped`] (cumulative since the agent started) and carried by every
//! later sample. Counters are cumulative, so a thinned-out stretch loses resolution,
//! never a count. Pure: it must never block, grow or reorder samples.

use drover_protocol::Telemetry;
use heapless::Vec;

use super::config::MAX_TELEMETRY_QUEUE;

const CAPACITY: usize = MAX_TELEMETRY_QUEUE as usize;

/// What a push did to stay within the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// There was room.
    Free,
    /// A sample was thinned out: one of two taken in the same minute.
    Downsampled,
    /// No two samples shared a minute: the oldest was dropped.
    Dropped,
}

/// Samples waiting to be sent, oldest first (so in `seq` order).
#[derive(Debug)]
pub struct TelemetryQueue {
    items: Vec<Box<Telemetry>, CAPACITY>,
    limit: usize,
    dropped: u64,
    downsampled: u64,
}

impl TelemetryQueue {
    /// A queue holding at most `limit` samples (clamped to `1..=MAX_TELEMETRY_QUEUE`).
    pub fn new(limit: u32) -> Self {
        TelemetryQueue {
            items: Vec::new(),
            limit: (limit as usize).clamp(1, CAPACITY),
            dropped: 0,
            downsampled: 0,
        }
    }

    /// Appends `sample`, making room first when full; sets its `dropped` to the count so
    /// far (this push's drop included).
    pub fn push(&mut self, mut sample: Telemetry) -> Room {
        let room = if self.items.len() >= self.limit {
            self.make_room(sample.time_s)
        } else {
            Room::Free
        };
        if room == Room::Downsampled && self.items.len() >= self.limit {
            // The incoming sample was the later one of the pair: it is the one thinned.
            return room;
        }
        sample.dropped = self.dropped;
        // Cannot fail: there is room below `limit <= CAPACITY`.
        let _ = self.items.push(Box::new(sample));
        room
    }

    /// Frees one slot, or decides that the incoming sample (taken at `incoming_s`) is the
    /// one to thin out (then nothing is removed).
    fn make_room(&mut self, incoming_s: u64) -> Room {
        let minutes = self
            .items
            .iter()
            .map(|s| s.time_s / 60)
            .chain(std::iter::once(incoming_s / 60));
        let pair = minutes
            .clone()
            .zip(minutes.skip(1))
            .position(|(a, b)| a == b);
        match pair {
            Some(i) => {
                if i + 1 < self.items.len() {
                    self.items.remove(i + 1);
                }
                self.downsampled += 1;
                Room::Downsampled
            }
            None => {
                self.items.remove(0);
                self.dropped += 1;
                Room::Dropped
            }
        }
    }

    /// The oldest sample, left in place (removed with [`TelemetryQueue::pop`] once sent).
    pub fn front(&self) -> Option<&Telemetry> {
        self.items.first().map(|b| &**b)
    }

    /// The oldest sample, removed.
    pub fn pop(&mut self) -> Option<Telemetry> {
        (!self.items.is_empty()).then(|| *self.items.remove(0))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Samples dropped since the queue was created (no two shared a minute).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Samples thinned out since the queue was created (another one of their minute kept).
    pub fn downsampled(&self) -> u64 {
        self.downsampled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, time_s: u64) -> Telemetry {
        Telemetry {
            seq,
            time_s,
            ..Telemetry::default()
        }
    }

    fn drain(q: &mut TelemetryQueue) -> std::vec::Vec<(u64, u64)> {
        std::iter::from_fn(|| q.pop())
            .map(|s| (s.seq, s.time_s))
            .collect()
    }

    #[test]
    fn samples_leave_in_order_while_there_is_room() {
        let mut q = TelemetryQueue::new(4);
        for i in 1..=3 {
            assert_eq!(q.push(at(i, i * 10)), Room::Free);
        }
        assert_eq!(q.front().map(|s| s.seq), Some(1));
        assert_eq!(drain(&mut q), [(1, 10), (2, 20), (3, 30)]);
        assert!(q.is_empty() && q.pop().is_none());
        assert_eq!((q.dropped(), q.downsampled()), (0, 0));
    }

    #[test]
    fn a_full_queue_thins_the_oldest_minute_first_keeping_its_first_sample() {
        let mut q = TelemetryQueue::new(4);
        // Minute 0: t=0, 20, 40; minute 1: t=60.
        for (i, t) in [0, 20, 40, 60].into_iter().enumerate() {
            q.push(at(i as u64 + 1, t));
        }
        assert_eq!(q.push(at(5, 80)), Room::Downsampled);
        assert_eq!(q.push(at(6, 100)), Room::Downsampled);
        // Minute 0 is down to t=0; minute 1 (60, 80, 100) is thinned next.
        assert_eq!(q.push(at(7, 120)), Room::Downsampled);
        assert_eq!((q.dropped(), q.downsampled()), (0, 3));
        assert_eq!(drain(&mut q), [(1, 0), (4, 60), (6, 100), (7, 120)]);
    }

    #[test]
    fn the_incoming_sample_is_thinned_when_it_completes_the_oldest_pair() {
        let mut q = TelemetryQueue::new(2);
        q.push(at(1, 0));
        q.push(at(2, 60));
        assert_eq!(q.push(at(3, 70)), Room::Downsampled);
        assert_eq!(drain(&mut q), [(1, 0), (2, 60)]);
    }

    #[test]
    fn only_when_no_two_share_a_minute_is_the_oldest_dropped_and_counted() {
        let mut q = TelemetryQueue::new(3);
        for i in 0..3 {
            q.push(at(i + 1, i * 60));
        }
        assert_eq!(q.push(at(4, 180)), Room::Dropped);
        assert_eq!(q.push(at(5, 240)), Room::Dropped);
        assert_eq!((q.dropped(), q.downsampled()), (2, 0));
        let left: std::vec::Vec<(u64, u64)> = std::iter::from_fn(|| q.pop())
            .map(|s| (s.seq, s.dropped))
            .collect();
        // Each sample carries the drops counted when it was queued, its own push's included.
        assert_eq!(left, [(3, 0), (4, 1), (5, 2)]);
    }

    #[test]
    fn a_long_outage_keeps_one_sample_per_minute_then_drops_the_oldest() {
        let mut q = TelemetryQueue::new(8);
        // 10 s interval for 20 minutes: 120 samples into 8 slots.
        for i in 0..120u64 {
            q.push(at(i + 1, i * 10));
        }
        let left = drain(&mut q);
        let minutes: std::vec::Vec<u64> = left.iter().map(|(_, t)| t / 60).collect();
        assert_eq!(minutes.len(), 8);
        assert!(minutes.windows(2).all(|w| w[0] < w[1]), "{left:?}");
        assert!(
            left.windows(2).all(|w| w[0].0 < w[1].0),
            "seq order: {left:?}"
        );
        assert_eq!(minutes.last(), Some(&19), "the newest minute is kept");
        assert_eq!(
            q.dropped(),
            12,
            "minutes 0..=11 dropped as wholes: {left:?}"
        );
        assert_eq!(q.downsampled(), 120 - 8 - 12);
    }

    #[test]
    fn the_limit_is_clamped_to_the_storage() {
        let mut q = TelemetryQueue::new(1000);
        for i in 0..300u64 {
            q.push(at(i + 1, i * 60));
        }
        assert_eq!(q.len(), CAPACITY);
        assert_eq!(q.dropped(), 300 - CAPACITY as u64);
        let mut one = TelemetryQueue::new(0);
        one.push(at(1, 0));
        assert_eq!(one.push(at(2, 60)), Room::Dropped);
        assert_eq!(one.pop().map(|s| s.seq), Some(2));
    }
}
