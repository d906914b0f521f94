//! A rate limit for a warning that can repeat at the pace of a container's output (a
//! failed log write on a full disk would otherwise fill `shim.log`, which lives in RAM):
//! the first failure, then at most one line per interval with the count of failures
//! left unreported since. It must never lose that count.

use std::time::{Duration, Instant};

pub struct WarnLimit {
    interval: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl WarnLimit {
    pub fn new(interval: Duration) -> Self {
        WarnLimit {
            interval,
            last: None,
            unreported: 0,
        }
    }

    /// Counts one failure at `now`; `Some(n)` when a line is due now, `n` being the
    /// failures left unreported before this one.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.unreported += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unreported))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_told_then_one_line_per_interval_with_the_count() {
        let mut w = WarnLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(w.hit(t0), Some(0));
        for s in 1..=59 {
            assert_eq!(w.hit(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(w.hit(t0 + Duration::from_secs(60)), Some(59));
        assert_eq!(w.hit(t0 + Duration::from_secs(61)), None);
        assert_eq!(w.hit(t0 + Duration::from_secs(200)), Some(1));
    }
}
