//! `GET /v1/events`: the fleet's change notifications as server-sent events, coalesced so
//! that a big fleet cannot flood a browser.
//!
//! Each stream folds notifications into a [`Coalescer`] (pure, bounded) and sends what
//! gathered once per [`FLUSH`]: one `changes` event naming the devices whose status,
//! presence or telemetry changed, telemetry at most once per [`TELEMETRY_EVERY`]. When
//! more devices changed than a browser should fetch one by one, or the stream fell behind
//! the broadcast, it sends `resync` instead: re-read what you show. `?device=NAME` keeps
//! only that device's notifications (and fleet-wide ones). Idle streams get keep-alive
//! comments. This module must never block the senders (it only reads the broadcast) and
//! never sends data beyond names: browsers fetch state through the API.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::time::{Instant, MissedTickBehavior};

use crate::events::FleetEvent;

/// How often a stream sends what gathered.
pub const FLUSH: Duration = Duration::from_secs(1);
/// Telemetry notifications are sent at most this often (a device samples every 10 s by
/// default; 10,000 of them would otherwise name 1,000 devices a second).
pub const TELEMETRY_EVERY: Duration = Duration::from_secs(5);
/// Device names one stream holds at most before it gives up listing and sends `resync`.
pub const MAX_NAMES: usize = 256;
/// Keep-alive comment interval (proxies close idle connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One `changes` event: what changed since the last one.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Devices whose status changed.
    pub status: Vec<String>,
    /// Devices that came online (true) or went offline (false).
    pub presence: BTreeMap<String, bool>,
    /// Devices with a new telemetry sample.
    pub telemetry: Vec<String>,
    /// Deployments, revisions or rollouts changed.
    pub fleet: bool,
}

/// What a stream sends next.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    Changes(Changes),
    /// Notifications were lost or too many to list: re-read everything shown.
    Resync,
}

/// The notifications of one stream since its last flush.
#[derive(Debug, Default)]
pub struct Coalescer {
    device: Option<String>,
    status: BTreeSet<String>,
    presence: BTreeMap<String, bool>,
    telemetry: BTreeSet<String>,
    fleet: bool,
    resync: bool,
    telemetry_sent: Option<Instant>,
}

impl Coalescer {
    /// For a stream of every device (`None`) or of one.
    pub fn new(device: Option<String>) -> Coalescer {
        Coalescer {
            device,
            ..Coalescer::default()
        }
    }

    pub fn push(&mut self, event: FleetEvent) {
        if self.resync {
            return;
        }
        let wanted = |d: &str| self.device.as_deref().is_none_or(|w| w == d);
        match event {
            FleetEvent::Status { device } if wanted(&device) => {
                self.status.insert(device);
            }
            FleetEvent::Presence { device, online } if wanted(&device) => {
                self.presence.insert(device, online);
            }
            FleetEvent::Telemetry { device } if wanted(&device) => {
                self.telemetry.insert(device);
            }
            FleetEvent::Fleet => self.fleet = true,
            _ => {}
        }
        if self.status.len() + self.presence.len() + self.telemetry.len() > MAX_NAMES {
            self.lagged();
        }
    }

    /// The stream missed notifications: everything gathered is void.
    pub fn lagged(&mut self) {
        self.status.clear();
        self.presence.clear();
        self.telemetry.clear();
        self.fleet = false;
        self.resync = true;
    }

    /// What to send at `now`, if anything; telemetry waits until [`TELEMETRY_EVERY`]
    /// passed since telemetry was last sent.
    pub fn take(&mut self, now: Instant) -> Option<Flush> {
        if std::mem::take(&mut self.resync) {
            self.telemetry_sent = Some(now);
            return Some(Flush::Resync);
        }
        let telemetry_due = self
            .telemetry_sent
            .is_none_or(|t| now.duration_since(t) >= TELEMETRY_EVERY);
        let telemetry = match telemetry_due && !self.telemetry.is_empty() {
            true => {
                self.telemetry_sent = Some(now);
                std::mem::take(&mut self.telemetry).into_iter().collect()
            }
            false => Vec::new(),
        };
        let changes = Changes {
            status: std::mem::take(&mut self.status).into_iter().collect(),
            presence: std::mem::take(&mut self.presence),
            telemetry,
            fleet: std::mem::take(&mut self.fleet),
        };
        (changes != Changes::default()).then_some(Flush::Changes(changes))
    }
}

impl Flush {
    fn into_event(self) -> Event {
        match self {
            Flush::Resync => Event::default().event("resync").data("{}"),
            Flush::Changes(c) => {
                let data = serde_json::to_string(&c).unwrap_or_else(|_| "{}".to_owned());
                Event::default().event("changes").data(data)
            }
        }
    }
}

/// The SSE answer for one browser: a `hello` event at once (so the page knows it is
/// live), then [`flushes`].
pub fn sse(
    rx: Receiver<FleetEvent>,
    device: Option<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hello = Event::default().event("hello").data("{}");
    let events = futures_util::stream::once(async { hello })
        .chain(flushes(rx, device).map(Flush::into_event))
        .map(Ok);
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// What `rx` brings, coalesced, once per [`FLUSH`] when anything gathered; ends when the
/// sending side is gone.
pub fn flushes(rx: Receiver<FleetEvent>, device: Option<String>) -> impl Stream<Item = Flush> {
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = (rx, Coalescer::new(device), tick);
    futures_util::stream::unfold(state, |(mut rx, mut co, mut tick)| async move {
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(event) => co.push(event),
                    Err(RecvError::Lagged(_)) => co.lagged(),
                    Err(RecvError::Closed) => return None,
                },
                now = tick.tick() => {
                    if let Some(flush) = co.take(now) {
                        return Some((flush, (rx, co, tick)));
                    }
                }
            }
        }
    })
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
