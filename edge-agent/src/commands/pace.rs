//! Pure pacing of command output: a token bucket per device (all its log streams share
//! the uplink) and the cutting of output into chunks. No IO, no clock of its own.

use std::time::{Duration, Instant};

use drover_protocol::command::MAX_CHUNK_BYTES;

/// Output bytes per second a device sends for all its log streams together.
pub const RATE_BYTES_PER_S: u64 = 64 * 1024;
/// Bytes that may leave at once after a quiet spell (one chunk).
pub const BURST_BYTES: u64 = MAX_CHUNK_BYTES as u64;

/// A token bucket: `rate` bytes per second, at most `burst` saved up.
#[derive(Debug)]
pub struct Bucket {
    rate: u64,
    burst: u64,
    /// Bytes that may be sent now; negative after a send that borrowed from the future.
    tokens: i64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: u64, burst: u64, now: Instant) -> Bucket {
        Bucket {
            rate: rate.max(1),
            burst,
            tokens: burst as i64,
            at: now,
        }
    }

    /// Takes `bytes` and says how long to wait before sending them (zero when they may
    /// leave now). Sends may borrow: the wait is paid before the bytes go, so the rate
    /// holds over any window longer than one chunk.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = (elapsed.as_micros() * u128::from(self.rate) / 1_000_000) as i64;
        self.tokens = (self.tokens.saturating_add(earned)).min(self.burst as i64);
        self.at = now;
        self.tokens -= bytes as i64;
        if self.tokens >= 0 {
            Duration::ZERO
        } else {
            Duration::from_micros((-self.tokens) as u64 * 1_000_000 / self.rate)
        }
    }
}

/// How many of `available` bytes the next chunk carries: at most one chunk, and never
/// beyond what is left of the command's `max_bytes` budget.
pub fn next_chunk_len(available: u64, sent: u64, max_bytes: u64) -> usize {
    let left = max_bytes.saturating_sub(sent);
    available.min(left).min(MAX_CHUNK_BYTES as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_holds_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, 500, t0);
        assert_eq!(b.take(500, t0), Duration::ZERO);
        // Empty: 250 more bytes wait a quarter of a second.
        assert_eq!(b.take(250, t0), Duration::from_millis(250));
        // Paid for by waiting: after that wait, the next 1000 bytes wait a full second.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(b.take(1000, t1), Duration::from_secs(1));
        // A long quiet spell saves up only `burst`.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(b.take(500, t2), Duration::ZERO);
        assert_eq!(b.take(1, t2), Duration::from_millis(1));
    }

    #[test]
    fn over_ten_seconds_a_streaming_device_sends_at_most_rate_times_ten_plus_a_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(RATE_BYTES_PER_S, BURST_BYTES, t0);
        let mut now = t0;
        let mut sent = 0;
        while now < t0 + Duration::from_secs(10) {
            now += b.take(MAX_CHUNK_BYTES as u64, now);
            sent += MAX_CHUNK_BYTES as u64;
        }
        assert!(sent <= RATE_BYTES_PER_S * 10 + 2 * BURST_BYTES, "{sent}");
        assert!(sent >= RATE_BYTES_PER_S * 9, "{sent}");
    }

    #[test]
    fn chunks_are_bounded_by_size_and_budget() {
        assert_eq!(next_chunk_len(100, 0, 1000), 100);
        assert_eq!(next_chunk_len(1 << 20, 0, 1 << 30), MAX_CHUNK_BYTES);
        assert_eq!(next_chunk_len(1 << 20, 990, 1000), 10);
        assert_eq!(next_chunk_len(1 << 20, 1000, 1000), 0);
        assert_eq!(next_chunk_len(5, 2000, 1000), 0);
    }
}
