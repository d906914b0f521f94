//! Restart back-off: 1 s, doubling, capped at 5 min; a container that ran for 10 min
//! before exiting starts again from 1 s.

/// First restart delay.
pub const INITIAL_MS: u64 = 1_000;
/// Longest delay between restarts.
pub const CAP_MS: u64 = 5 * 60 * 1_000;
/// A run at least this long resets the back-off.
pub const RESET_AFTER_MS: u64 = 10 * 60 * 1_000;

/// Delay before the restart that follows `level` consecutive quick restarts.
pub fn delay_ms(level: u32) -> u64 {
    INITIAL_MS.saturating_mul(1u64 << level.min(20)).min(CAP_MS)
}

/// The level that applies after a run of `ran_ms` (boot clock).
pub fn effective_level(level: u32, ran_ms: u64) -> u32 {
    if ran_ms >= RESET_AFTER_MS { 0 } else { level }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_and_caps_at_five_minutes() {
        let delays: Vec<u64> = (0..12).map(delay_ms).collect();
        assert_eq!(
            &delays[..9],
            &[
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000
            ]
        );
        assert!(delays[9..].iter().all(|&d| d == CAP_MS));
        assert_eq!(delay_ms(u32::MAX), CAP_MS);
    }

    #[test]
    fn a_long_run_resets_the_level() {
        assert_eq!(effective_level(7, RESET_AFTER_MS - 1), 7);
        assert_eq!(effective_level(7, RESET_AFTER_MS), 0);
    }
}
