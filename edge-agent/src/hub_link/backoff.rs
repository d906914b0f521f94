//! Reconnect back-off: rumqttc reconnects at once on every `poll()`, so without this a
//! dead broker would be hammered in a tight loop. Exponential from 0.5 s to 30 s, each
//! delay jittered by ±20 % so that a fleet does not reconnect in lockstep after an outage.
//!
//! Pure: the random fraction is passed in, so the schedule is testable.

use std::time::Duration;

const FIRST_MS: u64 = 500;
const MAX_MS: u64 = 30_000;
/// Jitter as a fraction of the delay, in percent.
const JITTER_PERCENT: u64 = 20;

/// Where the back-off schedule stands.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt; `random` is uniform in `0..=u32::MAX`.
    pub fn next_delay(&mut self, random: u32) -> Duration {
        let base = FIRST_MS
            .saturating_mul(1u64 << self.failures.min(16))
            .min(MAX_MS);
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(jitter(base, random))
    }

    /// A connection was accepted: the next failure starts from the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `base` moved by up to ±JITTER_PERCENT, `random` choosing where in that range.
fn jitter(base: u64, random: u32) -> u64 {
    let span = base * JITTER_PERCENT / 100;
    let offset = (2 * span) * u64::from(random) / u64::from(u32::MAX);
    base - span + offset
}

/// A random u32 from the OS; a fixed midpoint (no jitter) if the OS has none to give.
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    match getrandom::getrandom(&mut b) {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => u32::MAX / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let mid = u32::MAX / 2;
        let got: Vec<u64> = (0..9)
            .map(|_| b.next_delay(mid).as_millis() as u64)
            .collect();
        // Midpoint jitter leaves the base (to within a rounding millisecond).
        let want = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for (g, w) in got.iter().zip(want) {
            assert!(g.abs_diff(w) <= 1, "{got:?}");
        }
        assert_eq!(b.failures(), 9);
        b.reset();
        assert!(b.next_delay(mid).as_millis().abs_diff(500) <= 1);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for random in [0, 1, 12345, u32::MAX / 3, u32::MAX - 1, u32::MAX] {
            let mut b = Backoff::default();
            for _ in 0..40 {
                let base = FIRST_MS
                    .saturating_mul(1 << b.failures().min(16))
                    .min(MAX_MS);
                let d = b.next_delay(random).as_millis() as u64;
                assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{d} vs {base}");
            }
        }
        assert_eq!(jitter(1000, 0), 800);
        assert_eq!(jitter(1000, u32::MAX), 1200);
    }

    #[test]
    fn the_os_gives_varied_randomness() {
        let draws: std::collections::BTreeSet<u32> = (0..8).map(|_| random_u32()).collect();
        assert!(draws.len() > 1);
    }
}
