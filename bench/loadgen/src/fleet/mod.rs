//! `drover-loadgen fleet`: a fleet of simulated devices ([`super::sim`]) that stays up
//! across measurements (and across hub restarts), driven by bench/fanout.py through JSON
//! lines: one command per line on stdin, one answer per line on stdout.
//!
//! Commands (`{"cmd": ..., ...}`):
//! - `connect {timeout_s}`: start every device; wait until all are connected and have
//!   acknowledged their first desired state, and the hub has recorded those statuses.
//! - `apply {manifest, hub_pid, broker_pid?, wait?, timeout_s, probe?}`: run
//!   `drover-hub apply -f manifest` and time it until every device (or only `wait`, a
//!   device name) has acknowledged a newer generation, and until the hub has recorded it
//!   (`status_accepted`); `probe: {paths, interval_ms}` probes the API meanwhile.
//! - `mark`, then `wait_resync {timeout_s}`: when did every device receive a desired state
//!   with a valid signature (a republished one counts) after the mark.
//! - `heartbeat {interval_ms}` (0 = off), `telemetry {interval_ms}` (0 = off; module
//!   `telemetry`), `counters`, `quit`.
//! - `revisions {revision}`: which devices received a desired state giving a workload that
//!   revision (with `--health`, bench/rollout.py), and when each first did.
//!
//! Times are taken where things happen (in the device tasks); wall-clock times are Unix
//! seconds, so that the driver can relate them to processes it started. This module
//! measures and reports; it never judges a figure against a target.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use drover_protocol::Name;
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::Res;
use crate::health::HealthSim;
use crate::sim::{self, Ev, Shared};

mod apply;
mod commands;

pub use commands::run;

#[derive(clap::Args)]
pub struct Args {
    /// `host:port` of the hub's HTTP API.
    #[arg(long)]
    pub api: String,
    /// `host:port` of the MQTT broker the devices use.
    #[arg(long)]
    pub broker: String,
    /// JSON `{"public_key": BASE64, "devices": [[name, credential], ...]}`.
    #[arg(long)]
    pub creds: PathBuf,
    /// The `drover-hub` binary used for `apply`.
    #[arg(long)]
    pub hub_bin: PathBuf,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 500)]
    pub connect_concurrency: usize,
    /// Cap of each device's reconnect back-off (100 ms doubling, jittered 0.5-1.5x).
    #[arg(long, default_value_t = 1000)]
    pub reconnect_max_ms: u64,
    /// Set TCP_NODELAY on the devices' connections, as drover-agent does (without it,
    /// Nagle's algorithm holds a status sent right after the PUBACK of a desired state).
    #[arg(long)]
    pub tcp_nodelay: bool,
    /// Report each workload of the desired state running and ready, with its revision
    /// (module `health`), as an agent with passing readiness probes does.
    #[arg(long)]
    pub health: bool,
    /// With --health: a new revision's containers run (and report ready) this long after
    /// it arrived.
    #[arg(long, default_value_t = 0)]
    pub ready_after_ms: u64,
    /// With --health: a container whose image contains this runs but never becomes ready
    /// (its readiness probe fails).
    #[arg(long)]
    pub unhealthy_image: Option<String>,
    /// Workloads (one container each) in every telemetry sample.
    #[arg(long, default_value_t = 1)]
    pub telemetry_workloads: usize,
}

/// What the coordinator knows about the fleet, fed by the devices' events.
pub struct Fleet {
    pub args: Args,
    pub n: usize,
    names: Vec<Name>,
    credentials: Vec<String>,
    pub index: HashMap<String, usize>,
    key: VerifyingKey,
    tx: mpsc::UnboundedSender<Ev>,
    rx: mpsc::UnboundedReceiver<Ev>,
    heartbeat: watch::Sender<u64>,
    /// Telemetry interval of every device (0 = off) and what they sent.
    telemetry: watch::Sender<u64>,
    pub telemetry_shared: Option<Arc<crate::telemetry::TelemetryShared>>,
    started: bool,
    n_connected: usize,
    connected: Vec<bool>,
    /// Newest generation each device acknowledged (PUBACK of its status).
    pub acked: Vec<u64>,
    /// Newest generation each device received, and when.
    pub received: Vec<(u64, Instant)>,
    /// Per workload revision, when each device (index) first received it.
    revisions: BTreeMap<u64, HashMap<usize, Instant>>,
    n_synced: usize,
    mark: Option<Instant>,
    seen: Vec<bool>,
    n_seen: usize,
    first_seen: Option<Instant>,
    all_seen: Option<Instant>,
    connects_since_mark: u64,
    last_connect: Option<Instant>,
    /// Errors by kind, since the start; each answer reports those of its command.
    pub errors: HashMap<&'static str, u64>,
    pub error_samples: Vec<String>,
    /// `Instant` and Unix time read together, to turn one into the other.
    base: (Instant, f64),
}

/// An acknowledgement that raised a device's acknowledged generation.
pub struct Ack {
    pub device: usize,
    pub from: u64,
    pub to: u64,
    pub at: Instant,
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Fleet {
    pub fn load(args: Args) -> Res<Fleet> {
        let text = std::fs::read_to_string(&args.creds)
            .map_err(|e| format!("cannot read {}: {e}", args.creds.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.creds.display()))?;
        let key_bytes = STANDARD
            .decode(doc["public_key"].as_str().unwrap_or_default())
            .map_err(|e| format!("bad public key: {e}"))?;
        let key_arr: [u8; 32] = key_bytes
            .try_into()
            .map_err(|_| "public key is not 32 bytes".to_owned())?;
        let key = VerifyingKey::from_bytes(&key_arr).map_err(|e| format!("bad public key: {e}"))?;
        let (mut names, mut credentials) = (Vec::new(), Vec::new());
        for d in doc["devices"].as_array().ok_or("no devices")? {
            names.push(Name::new(d[0].as_str().unwrap_or_default()).map_err(|e| e.to_string())?);
            credentials.push(d[1].as_str().unwrap_or_default().to_owned());
        }
        let n = names.len();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, d)| (d.as_str().to_owned(), i))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Fleet {
            args,
            n,
            names,
            credentials,
            index,
            key,
            tx,
            rx,
            heartbeat: watch::channel(0).0,
            telemetry: watch::channel(0).0,
            telemetry_shared: None,
            started: false,
            n_connected: 0,
            connected: vec![false; n],
            acked: vec![0; n],
            received: vec![(0, Instant::now()); n],
            revisions: BTreeMap::new(),
            n_synced: 0,
            mark: None,
            seen: vec![false; n],
            n_seen: 0,
            first_seen: None,
            all_seen: None,
            connects_since_mark: 0,
            last_connect: None,
            errors: HashMap::new(),
            error_samples: Vec::new(),
            base: (Instant::now(), unix_now()),
        })
    }

    pub fn unix(&self, t: Instant) -> f64 {
        let (i0, u0) = self.base;
        if t >= i0 {
            u0 + (t - i0).as_secs_f64()
        } else {
            u0 - (i0 - t).as_secs_f64()
        }
    }

    /// Takes in one device event; an acknowledgement of a newer generation is returned.
    fn on(&mut self, ev: Ev) -> Option<Ack> {
        match ev {
            Ev::Connected(i, at) => {
                if !self.connected[i] {
                    self.connected[i] = true;
                    self.n_connected += 1;
                }
                if self.mark.is_some_and(|m| at >= m) {
                    self.connects_since_mark += 1;
                    self.last_connect = Some(at);
                }
            }
            Ev::Desired(i, generation, at) => {
                if generation > self.received[i].0 {
                    self.received[i] = (generation, at);
                }
                if self.mark.is_some_and(|m| at >= m) && !self.seen[i] {
                    self.seen[i] = true;
                    self.n_seen += 1;
                    self.first_seen.get_or_insert(at);
                    if self.n_seen == self.n {
                        self.all_seen = Some(at);
                    }
                }
            }
            Ev::Revision(i, revision, at) => {
                self.revisions
                    .entry(revision)
                    .or_default()
                    .entry(i)
                    .or_insert(at);
            }
            Ev::Acked(i, generation, at) => {
                let from = self.acked[i];
                if generation > from {
                    self.acked[i] = generation;
                    if from == 0 {
                        self.n_synced += 1;
                    }
                    return Some(Ack {
                        device: i,
                        from,
                        to: generation,
                        at,
                    });
                }
            }
            Ev::ConnError(i, e) => {
                if self.connected[i] {
                    self.connected[i] = false;
                    self.n_connected -= 1;
                }
                self.note("connection", e);
            }
            Ev::Rejected(e) => self.note("rejected", e),
        }
        None
    }

    fn note(&mut self, kind: &'static str, msg: String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(msg);
        }
    }

    /// The next device event, taken in; `None` when `until` passed first.
    pub async fn next_event(&mut self, until: Instant) -> Option<Option<Ack>> {
        tokio::select! {
            ev = self.rx.recv() => ev.map(|ev| self.on(ev)),
            _ = tokio::time::sleep_until(until) => None,
        }
    }

    /// Errors counted since `since` (a copy of `errors` taken earlier).
    pub fn errors_since(&self, since: &HashMap<&'static str, u64>) -> Value {
        let d: serde_json::Map<String, Value> = self
            .errors
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v - since.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| v.as_u64() != Some(0))
            .collect();
        Value::Object(d)
    }

    fn start_devices(&mut self) -> Res<()> {
        let (host, port) = self
            .args
            .broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("--broker {:?} is not host:port", self.args.broker))?;
        let telemetry = Arc::new(crate::telemetry::TelemetryShared {
            interval_ms: self.telemetry.subscribe(),
            workloads: self.args.telemetry_workloads,
            sent: Default::default(),
            not_queued: Default::default(),
        });
        self.telemetry_shared = Some(telemetry.clone());
        let shared = Arc::new(Shared {
            host,
            port,
            key: self.key,
            n: self.n,
            tx: self.tx.clone(),
            gate: Arc::new(Semaphore::new(self.args.connect_concurrency.max(1))),
            heartbeat_ms: self.heartbeat.subscribe(),
            reconnect_max: Duration::from_millis(self.args.reconnect_max_ms.max(100)),
            tcp_nodelay: self.args.tcp_nodelay,
            health: self.args.health.then(|| HealthSim {
                ready_after: Duration::from_millis(self.args.ready_after_ms),
                unhealthy_image: self.args.unhealthy_image.clone(),
            }),
            telemetry: telemetry.clone(),
        });
        let creds = std::mem::take(&mut self.credentials);
        for (i, (name, cred)) in self.names.iter().zip(creds).enumerate() {
            sim::spawn(i, name.clone(), cred, shared.clone());
        }
        self.started = true;
        Ok(())
    }

    /// Which devices received `revision`, and when each first did (Unix seconds).
    pub fn revision_receipts(&self, revision: u64) -> Value {
        let got = self.revisions.get(&revision);
        let mut times: Vec<(&str, f64)> = got
            .into_iter()
            .flatten()
            .map(|(i, at)| (self.names[*i].as_str(), self.unix(*at)))
            .collect();
        times.sort_by(|a, b| a.1.total_cmp(&b.1));
        let received: serde_json::Map<String, Value> = times
            .iter()
            .map(|(name, t)| (name.to_string(), json!(crate::round3(*t))))
            .collect();
        json!({
            "ok": true,
            "revision": revision,
            "devices": times.len(),
            "first_unix": times.first().map(|t| crate::round3(t.1)),
            "last_unix": times.last().map(|t| crate::round3(t.1)),
            "received": received,
        })
    }

    /// Keeps taking device events until `task` ends; its result.
    pub async fn drain_while<T>(&mut self, task: tokio::task::JoinHandle<Res<T>>) -> Res<T> {
        tokio::pin!(task);
        loop {
            tokio::select! {
                r = &mut task => return r.map_err(|e| format!("task failed: {e}"))?,
                ev = self.rx.recv() => { ev.map(|ev| self.on(ev)); }
            }
        }
    }
}
