//! Sending every Home Assistant discovery config again, on the telemetry thread: when
//! Home Assistant publishes its birth message (`online` on `{prefix}/status`: a restarted
//! HA reads retained configs only partly from rumqttd, which hands a new wildcard
//! subscriber at most 100 retained messages) and when the hub reconnects to the broker
//! (a restarted Mosquitto without persistence lost every retained config).
//!
//! Requests are coalesced: the first waits a short random delay (HA's advice, so that
//! it has subscribed), any more before the republish joins it, and republishes are at
//! least [`MIN_GAP`] apart, so a flapping HA cannot make the hub flood the broker. The
//! configs go out a few devices at a time, only while the mirrors' queue has room.
//! Only configs are sent again: the retained `status/json` mirrors come back with each
//! device's next status heartbeat, and `online` is the agents' own retained message.
//! This module must never block the telemetry thread.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Mirrors;
use super::homeassistant::Discovery;
use crate::mqtt::jitter;

/// Republishes start at least this far apart.
pub const MIN_GAP: Duration = Duration::from_secs(10);
/// The delay before a republish, scaled by a random factor in [0.5, 1.5).
pub const DELAY: Duration = Duration::from_secs(1);
/// Devices whose configs are queued per step, and the pause between steps.
const DEVICES_PER_STEP: usize = 8;
const STEP: Duration = Duration::from_millis(20);
/// Queue places left for the telemetry mirrors during a republish.
const RESERVE: usize = 512;

/// When republishes happen: pure, the time is passed in.
#[derive(Debug, Default)]
pub struct Gate {
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Gate {
    /// A request at `now`; `delay` is the jittered wait. Returns when the republish is
    /// due: a request already pending is joined, and a republish comes at least
    /// [`MIN_GAP`] after the last one.
    pub fn request(&mut self, now: Instant, delay: Duration) -> Instant {
        if let Some(due) = self.due {
            return due;
        }
        let earliest = self.last.map_or(now, |l| l + MIN_GAP);
        let due = (now + delay).max(earliest);
        self.due = Some(due);
        due
    }

    /// The pending republish, if any.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// True when the pending republish is due at `now` (it then starts, and the next
    /// one waits [`MIN_GAP`]).
    pub fn fire(&mut self, now: Instant) -> bool {
        match self.due {
            Some(due) if due <= now => {
                self.due = None;
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// The gate and the devices whose configs are still to be sent.
#[derive(Default)]
pub struct Rediscovery {
    gate: Gate,
    backlog: VecDeque<String>,
    /// Not before this: steps are paced, however many samples wake the thread.
    next_step: Option<Instant>,
}

impl Rediscovery {
    /// Asks for every config again; `why` is logged.
    pub fn request(&mut self, now: Instant, why: &'static str) {
        let due = self.gate.request(now, jitter(DELAY));
        tracing::debug!(
            why,
            in_ms = due.saturating_duration_since(now).as_millis() as u64,
            "Home Assistant discovery republish requested"
        );
    }

    /// When the thread must wake up for this next.
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        if self.backlog.is_empty() {
            self.gate.due()
        } else {
            Some(self.next_step.unwrap_or(now))
        }
    }

    /// Starts a due republish and queues the next few devices' configs.
    pub fn step(&mut self, now: Instant, discovery: &mut Discovery, mirrors: &Mirrors) {
        if self.gate.fire(now) {
            self.backlog = discovery.devices().into();
            tracing::info!(
                devices = self.backlog.len(),
                "sending Home Assistant discovery configs again"
            );
        }
        if self.backlog.is_empty() || self.next_step.is_some_and(|t| now < t) {
            return;
        }
        self.next_step = Some(now + STEP);
        for _ in 0..DEVICES_PER_STEP {
            let Some(device) = self.backlog.front() else {
                return;
            };
            let msgs = discovery.configs_of(device);
            if mirrors.room() < msgs.len() + RESERVE {
                return; // Try again next step.
            }
            let device = self.backlog.pop_front().unwrap_or_default();
            for m in msgs {
                if !mirrors.offer_bytes(m.topic.clone(), m.payload(), true) {
                    discovery.forget(&device); // Its next sample sends them all.
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(700);

    #[test]
    fn a_burst_of_requests_makes_one_republish() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        assert_eq!(g.request(t0, D), t0 + D);
        for i in 1..1000 {
            let at = t0 + Duration::from_micros(i * 500);
            assert_eq!(g.request(at, D * 2), t0 + D, "joined the pending one");
        }
        assert!(!g.fire(t0 + D / 2), "not before the delay");
        assert!(g.fire(t0 + D));
        assert!(!g.fire(t0 + D), "once");
        assert_eq!(g.due(), None);
    }

    #[test]
    fn a_flapping_home_assistant_gets_one_republish_per_gap() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        g.request(t0, D);
        assert!(g.fire(t0 + D));
        let mut fired = vec![t0 + D];
        // A request every 100 ms for a minute.
        for i in 1..600 {
            let now = t0 + D + Duration::from_millis(i * 100);
            if g.fire(now) {
                fired.push(now);
            }
            g.request(now, D);
        }
        assert!(
            fired.windows(2).all(|w| w[1] - w[0] >= MIN_GAP),
            "{fired:?}"
        );
        assert!((6..=7).contains(&fired.len()), "{}", fired.len());
    }

    #[test]
    fn a_request_during_the_gap_waits_for_its_end_and_is_not_lost() {
        let t0 = Instant::now();
        let mut g = Gate::default();
        g.request(t0, D);
        assert!(g.fire(t0 + D));
        let due = g.request(t0 + D + Duration::from_secs(1), D);
        assert_eq!(due, t0 + D + MIN_GAP);
        assert!(!g.fire(due - Duration::from_millis(1)));
        assert!(g.fire(due));
        // Long after the gap: only the delay.
        let later = due + MIN_GAP * 3;
        assert_eq!(g.request(later, D), later + D);
    }

    #[test]
    fn no_request_no_republish() {
        let mut g = Gate::default();
        assert_eq!(g.due(), None);
        assert!(!g.fire(Instant::now() + MIN_GAP * 10));
    }

    fn known(n: usize) -> Discovery {
        let mut d = Discovery::new("homeassistant");
        for i in 0..n {
            let view = serde_json::json!({
                "device": format!("pi-{i:02}"), "received_ms": 0, "time_s": 0, "seq": 1,
                "cpu_percent": 1.0, "load1": 0.1, "memory_used_bytes": 1,
                "memory_available_bytes": 1, "disk_free_bytes": 1,
                "temperature_celsius": null, "throttled": null, "net_rx_bytes": 0,
                "net_tx_bytes": 0, "uptime_s": 1, "agent_rss_bytes": 1,
                "dropped_samples": 0, "containers": [],
            });
            let sent = d.update(&serde_json::from_value(view).unwrap());
            assert_eq!(sent.len(), 4, "cpu, memory, disk, online");
        }
        d
    }

    fn drain(rx: &mut tokio::sync::mpsc::Receiver<super::super::MirrorMsg>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            assert!(m.retain && !m.payload.is_empty(), "{m:?}");
            out.push(m.topic);
        }
        out
    }

    #[test]
    fn a_republish_goes_out_a_few_devices_per_step() {
        let (mut d, (mirrors, mut rx)) = (known(20), Mirrors::channel());
        let mut r = Rediscovery::default();
        let t0 = Instant::now();
        r.step(t0, &mut d, &mirrors);
        assert!(drain(&mut rx).is_empty(), "nothing asked");
        r.request(t0, "test");
        let due = r.wake_at(t0).unwrap();
        r.step(due, &mut d, &mirrors);
        let first = drain(&mut rx);
        assert_eq!(first.len(), DEVICES_PER_STEP * 4);
        assert!(first[0].starts_with("homeassistant/") && first[0].contains("pi-00"));
        r.step(due + STEP / 2, &mut d, &mirrors);
        assert!(drain(&mut rx).is_empty(), "paced");
        assert_eq!(r.wake_at(due + STEP / 2), Some(due + STEP));
        r.step(due + STEP, &mut d, &mirrors);
        r.step(due + STEP * 2, &mut d, &mirrors);
        let rest = drain(&mut rx);
        assert_eq!(rest.len(), (20 - DEVICES_PER_STEP) * 4);
        assert!(rest.last().unwrap().contains("pi-19"));
        assert_eq!(r.wake_at(due + STEP * 2), None, "done");
    }

    #[test]
    fn a_republish_waits_for_room_in_the_queue() {
        let (mut d, (mirrors, mut rx)) = (known(2), Mirrors::channel());
        for i in 0..super::super::mirror::QUEUE - RESERVE {
            assert!(mirrors.offer_bytes(format!("t/{i}"), vec![1], false));
        }
        let mut r = Rediscovery::default();
        let t0 = Instant::now();
        r.request(t0, "test");
        let due = r.wake_at(t0).unwrap();
        r.step(due, &mut d, &mirrors);
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(
            queued,
            super::super::mirror::QUEUE - RESERVE,
            "no room: none sent"
        );
        r.step(due + STEP, &mut d, &mirrors);
        assert_eq!(drain(&mut rx).len(), 8, "room again: sent");
        assert_eq!(mirrors.dropped(), 0);
    }

    #[test]
    fn the_jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..100 {
            let j = jitter(DELAY);
            assert!(j >= DELAY / 2 && j < DELAY * 3 / 2, "{j:?}");
        }
    }
}
