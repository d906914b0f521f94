//! Per-key log rate limiting: anything a device can trigger in a loop is logged at most
//! once per interval per device. Bounded memory: past `MAX_KEYS` keys it starts afresh.

use std::collections::HashMap;

const MAX_KEYS: usize = 4096;

#[derive(Debug)]
pub struct RateLimit {
    every_ms: u64,
    last: HashMap<String, u64>,
}

impl RateLimit {
    pub fn new(every_ms: u64) -> RateLimit {
        RateLimit {
            every_ms,
            last: HashMap::new(),
        }
    }

    /// True when `key` may be logged now (and records that it was).
    pub fn allow(&mut self, key: &str, now_ms: u64) -> bool {
        if self
            .last
            .get(key)
            .is_some_and(|t| now_ms.saturating_sub(*t) < self.every_ms)
        {
            return false;
        }
        if self.last.len() >= MAX_KEYS {
            self.last.clear();
        }
        let key: String = key.chars().take(64).collect();
        self.last.insert(key, now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_per_key() {
        let mut r = RateLimit::new(1000);
        assert!(r.allow("a", 0));
        assert!(!r.allow("a", 999));
        assert!(r.allow("b", 999));
        assert!(r.allow("a", 1000));
    }
}
