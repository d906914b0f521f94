//! Telemetry on the hub: samples from every device are verified (credential MAC, rising
//! `seq`), kept in memory (latest per device, `cache`), folded into a bounded per-minute
//! history in SQLite (`history`), and republished as JSON for dashboards (`mirror`).
//!
//! It runs on a thread of its own, apart from the controller: 10,000 devices at the
//! default interval send 1,000 samples a second, and none of them may delay a change to
//! the fleet. This module must never block the MQTT loop (a full queue drops and counts).

pub mod cache;
pub mod history;
pub mod homeassistant;
pub mod ingest;
pub mod mirror;
pub mod rediscover;
pub mod routes;
pub mod view;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use drover_protocol::topics;

pub use cache::{TelemetryCache, TelemetryCounters};
pub use history::{HistoryError, HistoryReader, HistoryWriter};
pub use mirror::{MirrorMsg, Mirrors};

use crate::broker::Credentials;
use crate::events::{Events, FleetEvent};

/// Samples waiting for the telemetry thread at most (10 s of a 10,000-device fleet).
pub const QUEUE: usize = 10_000;
/// How often pending history rows are written and old ones pruned.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Where the thread writes and what it republishes.
pub struct Settings {
    /// `<data_dir>/telemetry.db`.
    pub history_path: PathBuf,
    /// Minutes of history kept; 0 = none.
    pub keep_minutes: u64,
    /// Home Assistant discovery prefix when `dashboards.home_assistant` is on.
    pub home_assistant: Option<String>,
}

/// What the thread receives.
enum Msg {
    /// A telemetry message: topic, payload, when the hub received it (Unix ms).
    Sample(String, Vec<u8>, u64),
    /// Write the pending history now and answer (a graceful stop).
    Flush(mpsc::Sender<()>),
    /// Send every Home Assistant discovery config again (coalesced); why, for the log.
    Rediscover(&'static str),
}

/// The MQTT loop's side: hands samples to the thread without ever blocking.
#[derive(Clone)]
pub struct Service {
    tx: SyncSender<Msg>,
    cache: TelemetryCache,
    /// Home Assistant's `{prefix}/status` when discovery is on.
    birth_topic: Option<String>,
}

impl Service {
    /// Opens the history and starts the thread. Everything it learns goes to `cache`,
    /// `mirrors` and `events`.
    pub fn spawn(
        settings: &Settings,
        creds: Credentials,
        cache: TelemetryCache,
        mirrors: Mirrors,
        events: Events,
    ) -> Result<Service, HistoryError> {
        let history = HistoryWriter::open(&settings.history_path, settings.keep_minutes)?;
        let verifier = ingest::Verifier::new(creds, cache.clone(), history.max_seqs()?);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let worker = Worker {
            verifier,
            history,
            cache: cache.clone(),
            mirrors,
            events,
            discovery: settings
                .home_assistant
                .as_deref()
                .map(homeassistant::Discovery::new),
            rediscovery: rediscover::Rediscovery::default(),
        };
        std::thread::Builder::new()
            .name("telemetry".to_owned())
            .spawn(move || worker.run(rx))
            .map_err(|e| HistoryError::Thread(e.to_string()))?;
        let birth_topic = settings
            .home_assistant
            .as_deref()
            .map(homeassistant::birth_topic);
        Ok(Service {
            tx,
            cache,
            birth_topic,
        })
    }

    /// Queues a telemetry message received at `at_ms`; a full queue drops it (counted as
    /// `overloaded`).
    pub fn offer(&self, topic: String, payload: Vec<u8>, at_ms: u64) {
        match self.tx.try_send(Msg::Sample(topic, payload, at_ms)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.cache.count_rejected("overloaded"),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Home Assistant's birth topic (`{prefix}/status`) when discovery is on: the MQTT
    /// client subscribes to it and calls [`Service::rediscover`] on `online`.
    pub fn birth_topic(&self) -> Option<&str> {
        self.birth_topic.as_deref()
    }

    /// Asks for every discovery config again (Home Assistant started, or the hub
    /// reconnected to the broker); coalesced and rate-limited on the thread. A no-op
    /// without discovery.
    pub fn rediscover(&self, why: &'static str) {
        if self.birth_topic.is_some() && self.tx.try_send(Msg::Rediscover(why)).is_err() {
            tracing::warn!(
                why,
                "telemetry queue full: discovery configs not sent again"
            );
        }
    }

    /// Writes the pending history (the last minute of samples) before the hub stops;
    /// waits at most `timeout`. Blocking: call it off the async runtime or at the end.
    pub fn flush(&self, timeout: Duration) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() && wait.recv_timeout(timeout).is_err() {
            tracing::warn!("the telemetry history was not written within {timeout:?}");
        }
    }
}

/// Reasons a sample is dropped, as counted: listed even at zero.
pub const REJECT_REASONS: [&str; 5] = [
    "unknown_device",
    "bad_mac",
    "replayed",
    "malformed",
    "overloaded",
];

/// Adds the telemetry counters to `get stats`: `telemetry_accepted`,
/// `telemetry_rejected_{reason}`, `telemetry_history_rows`, `mirror_dropped` (counted since
/// the hub started, unlike the status counters kept in the store).
pub fn add_stats(
    out: &mut std::collections::BTreeMap<String, u64>,
    c: &TelemetryCounters,
    mirrors_dropped: u64,
) {
    out.insert("telemetry_accepted".to_owned(), c.accepted);
    for r in REJECT_REASONS {
        let n = c.rejected.get(r).copied().unwrap_or(0);
        out.insert(format!("telemetry_rejected_{r}"), n);
    }
    out.insert("telemetry_history_rows".to_owned(), c.history_rows);
    out.insert("mirror_dropped".to_owned(), mirrors_dropped);
}

struct Worker {
    verifier: ingest::Verifier,
    history: HistoryWriter,
    cache: TelemetryCache,
    mirrors: Mirrors,
    events: Events,
    discovery: Option<homeassistant::Discovery>,
    rediscovery: rediscover::Rediscovery,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        loop {
            let now = Instant::now();
            let wake = self
                .rediscovery
                .wake_at(now)
                .map_or(next_flush, |r| r.min(next_flush));
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Msg::Sample(topic, payload, at_ms)) => self.handle(&topic, &payload, at_ms),
                Ok(Msg::Flush(done)) => {
                    self.flush();
                    let _ = done.send(());
                }
                Ok(Msg::Rediscover(why)) => self.rediscovery.request(Instant::now(), why),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            if let Some(discovery) = &mut self.discovery {
                self.rediscovery
                    .step(Instant::now(), discovery, &self.mirrors);
            }
            if Instant::now() >= next_flush {
                self.flush();
                next_flush = Instant::now() + FLUSH_EVERY;
            }
        }
    }

    fn handle(&mut self, topic: &str, payload: &[u8], at_ms: u64) {
        let Some((name, sample)) = self.verifier.check(topic, payload, at_ms) else {
            return;
        };
        if let Err(e) = self.history.record(name.as_str(), &sample) {
            tracing::error!(device = %name, "cannot record telemetry history: {e}");
        }
        self.cache.accept(name.as_str(), sample, at_ms);
        if self.mirrors.enabled()
            && let Some(view) = self.cache.latest(name.as_str())
        {
            self.mirrors
                .offer(topics::telemetry_json(&name), &view, false);
            self.discover(&view);
        }
        self.events.emit(FleetEvent::Telemetry {
            device: name.to_string(),
        });
    }

    /// Home Assistant discovery for a device's new sample: only when its entities change.
    fn discover(&mut self, view: &view::DeviceTelemetryView) {
        let Some(discovery) = &mut self.discovery else {
            return;
        };
        for msg in discovery.update(view) {
            if !self
                .mirrors
                .offer_bytes(msg.topic.clone(), msg.payload(), true)
            {
                // Dropped: send them all again with the device's next sample.
                discovery.forget(&view.device);
                return;
            }
        }
    }

    fn flush(&mut self) {
        match self.history.flush(crate::now_ms() / 1000) {
            Ok(rows) => self.cache.count_history_rows(rows),
            Err(e) => tracing::error!("cannot write telemetry history: {e}"),
        }
    }
}
