//! The agent's two clocks, behind a trait so that tests can step them.
//!
//! Decisions about time (restart back-off, restart windows, stop deadlines, retry of a
//! failed pull, the image-GC cadence) use the *boot clock* (`CLOCK_BOOTTIME`): it never
//! steps, also not when NTP corrects a board without an RTC that booted years behind, and
//! it keeps counting through suspend. The *wall clock* is only for humans and the hub
//! (timestamps in status reports). A boot-clock stamp written before a reboot is
//! meaningless after it; [`since`] and [`due_at`] read a stamp from the future as "before
//! this boot", which it is, so such stamps never hold a decision back.

#[cfg(test)]
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};

/// Milliseconds on the boot clock.
pub type BootMs = u64;

/// Where the agent reads the time.
pub trait Clock: Send + Sync {
    /// `CLOCK_BOOTTIME` in milliseconds: monotonic, counts suspend, restarts at boot.
    fn boot_ms(&self) -> BootMs;
    /// Unix time in milliseconds; may step in any direction.
    fn wall_ms(&self) -> u64;
}

/// The system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn boot_ms(&self) -> BootMs {
        boot_ms()
    }

    fn wall_ms(&self) -> u64 {
        crate::fsutil::now_ms()
    }
}

/// `CLOCK_BOOTTIME` in milliseconds (0 if the kernel cannot tell, which it always can).
pub fn boot_ms() -> BootMs {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            let (s, ns) = (t.tv_sec() as u64, t.tv_nsec() as u64);
            s.saturating_mul(1000).saturating_add(ns / 1_000_000)
        })
        .unwrap_or(0)
}

/// `stamp`, or 0 (the boot) when it lies in the future: written before a reboot.
fn this_boot(stamp: BootMs, now: BootMs) -> BootMs {
    if stamp > now { 0 } else { stamp }
}

/// Time from `stamp` to `now` on the boot clock; a stamp from before a reboot counts as
/// the whole uptime.
pub fn since(stamp: BootMs, now: BootMs) -> u64 {
    now - this_boot(stamp, now)
}

/// When something that happened at `stamp` is due after `delay` (boot clock). Never later
/// than `now + delay`, and stable from one pass to the next.
pub fn due_at(stamp: BootMs, delay: u64, now: BootMs) -> BootMs {
    this_boot(stamp, now).saturating_add(delay)
}

/// A clock the test moves by hand. Clones share the same time.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub struct FakeClock {
    boot: Arc<AtomicU64>,
    wall: Arc<AtomicU64>,
}

#[cfg(test)]
impl FakeClock {
    pub fn new(boot_ms: BootMs, wall_ms: u64) -> Self {
        FakeClock {
            boot: Arc::new(AtomicU64::new(boot_ms)),
            wall: Arc::new(AtomicU64::new(wall_ms)),
        }
    }

    /// Time passes: both clocks move forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.boot.fetch_add(ms, Ordering::SeqCst);
        self.wall.fetch_add(ms, Ordering::SeqCst);
    }

    /// NTP steps the wall clock to `wall_ms`; the boot clock does not move.
    pub fn set_wall(&self, wall_ms: u64) {
        self.wall.store(wall_ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn boot_ms(&self) -> BootMs {
        self.boot.load(Ordering::SeqCst)
    }

    fn wall_ms(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_from_before_a_reboot_count_from_the_boot() {
        assert_eq!(since(1_000, 5_000), 4_000);
        assert_eq!(since(9_000, 5_000), 5_000);
        assert_eq!(due_at(1_000, 8_000, 5_000), 9_000);
        assert_eq!(due_at(60_000, 8_000, 5_000), 8_000);
        assert_eq!(due_at(60_000, 8_000, 5_001), 8_000, "stable across passes");
    }

    #[test]
    fn the_boot_clock_moves_forward_and_the_fake_steps_only_the_wall() {
        let a = boot_ms();
        assert!(a > 0);
        assert!(boot_ms() >= a);
        let c = FakeClock::new(10, 1_000_000);
        c.set_wall(5);
        c.advance(7);
        assert_eq!((c.boot_ms(), c.wall_ms()), (17, 12));
    }
}
