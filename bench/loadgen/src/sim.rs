//! One simulated device of `drover-loadgen fleet`, behaving on the wire like
//! `drover-agent`'s hub link: its own MQTT connection (client id = user name = device
//! name, password = the MQTT password derived from the credential), last will `offline`
//! and retained `online` on its presence topic, a QoS 1 subscription to its desired topic.
//! Every desired state is verified with the hub's pinned key and opened with the device's
//! sealing key (both derived as the agent does, `drover_protocol::keys`); a newer one is acknowledged at once with a status sealed by the
//! credential (`observed_generation` = that generation; no workloads, or with `--health`
//! its workloads as [`crate::health`] runs them: a new revision reports running and ready
//! after the start delay, so the hub's rollouts judge it as they judge an agent). The
//! latest status is re-sent after every reconnect and, when the coordinator turns
//! heartbeats on, every heartbeat interval, at a phase of `index / n` of the interval so
//! that a fleet's heartbeats are spread evenly.
//!
//! Two tasks per device: the event loop (the only caller of `EventLoop::poll`, which is
//! not cancel-safe, so it is never raced in a `select!`) and the heartbeat timer, which
//! only queues publishes. Reports what happens to the coordinator as [`Ev`]s; it must
//! never judge or time anything itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_protocol::auth::{AuthError, seal_status};
use drover_protocol::keys::{SealSecret, mqtt_password};
use drover_protocol::sealed::open_desired;
use drover_protocol::{Capacity, DeviceStatus, Name, WorkloadSpec, topics};
use ed25519_dalek::VerifyingKey;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::{jitter, now_ms};
use crate::health::{HealthSim, Running, started};

/// What a device tells the coordinator.
pub enum Ev {
    /// The broker accepted the connection (also after every reconnect).
    Connected(usize, Instant),
    /// A desired state with a valid signature for this device arrived (a republished one
    /// of the generation already held too).
    Desired(usize, u64, Instant),
    /// A newer desired state gives a workload this revision (it may hold it already).
    Revision(usize, u64, Instant),
    /// The broker acknowledged (PUBACK) a status that reported this generation.
    Acked(usize, u64, Instant),
    /// The connection failed or dropped.
    ConnError(usize, String),
    /// A desired state failed verification, or a status could not be queued.
    Rejected(String),
}

/// What every device shares: where the broker is, the hub's key, the coordinator's
/// channel, the connect gate and the heartbeat interval (0 = off).
pub struct Shared {
    pub host: String,
    pub port: u16,
    pub key: VerifyingKey,
    pub n: usize,
    pub tx: mpsc::UnboundedSender<Ev>,
    /// Connection attempts in flight at once.
    pub gate: Arc<Semaphore>,
    pub heartbeat_ms: watch::Receiver<u64>,
    /// Cap of the reconnect back-off (from 100 ms, doubling, jittered).
    pub reconnect_max: Duration,
    pub tcp_nodelay: bool,
    /// Report workloads (`--health`); `None`: statuses carry none.
    pub health: Option<HealthSim>,
    pub telemetry: Arc<crate::telemetry::TelemetryShared>,
}

/// One device's state shared by its two tasks.
struct Dev {
    index: usize,
    name: Name,
    credential: String,
    /// Opens the sealed desired states (derived from the credential, as an agent does).
    seal: SealSecret,
    status_topic: String,
    client: AsyncClient,
    /// Newest generation verified.
    held: AtomicU64,
    /// Between a ConnAck and the next connection error: heartbeats are sent only then, so
    /// that nothing queued offline shifts the acknowledgement order below.
    connected: AtomicBool,
    /// Generation reported by each status in flight, oldest first (brokers acknowledge
    /// QoS 1 publishes of one connection in order); 0 for presence messages.
    in_flight: Mutex<VecDeque<u64>>,
    /// The workloads it runs (with `--health`).
    running: Mutex<Vec<Running>>,
}

/// Starts one device's tasks on the current runtime.
pub fn spawn(index: usize, name: Name, credential: String, shared: Arc<Shared>) {
    let id = name.as_str().to_owned();
    let mut opts = MqttOptions::new(id.clone(), shared.host.clone(), shared.port);
    opts.set_credentials(id, mqtt_password(credential.as_bytes()))
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(
            drover_protocol::MAX_MQTT_PACKET_BYTES,
            drover_protocol::MAX_MQTT_PACKET_BYTES,
        )
        .set_clean_session(true)
        .set_last_will(LastWill::new(
            topics::online(&name),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    let (client, mut el) = AsyncClient::new(opts, 16);
    el.network_options.set_connection_timeout(60);
    el.network_options.set_tcp_nodelay(shared.tcp_nodelay);
    let dev = Arc::new(Dev {
        index,
        status_topic: topics::status(&name),
        name,
        seal: SealSecret::derive(credential.as_bytes()),
        credential,
        client,
        held: AtomicU64::new(0),
        connected: AtomicBool::new(false),
        in_flight: Mutex::new(VecDeque::new()),
        running: Mutex::new(Vec::new()),
    });
    tokio::spawn(heartbeat(dev.clone(), shared.clone()));
    let d = dev.clone();
    tokio::spawn(crate::telemetry::run(
        index,
        shared.n,
        dev.name.clone(),
        dev.credential.clone(),
        dev.client.clone(),
        move || d.connected.load(Ordering::Relaxed),
        shared.telemetry.clone(),
    ));
    tokio::spawn(async move {
        let mut permit = shared.gate.clone().acquire_owned().await.ok();
        let mut backoff = Duration::from_millis(100);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    permit = None;
                    backoff = Duration::from_millis(100);
                    on_connected(&dev, &shared);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => on_desired(&dev, &shared, &p.payload),
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    let generation = lock(&dev.in_flight).pop_front().unwrap_or(0);
                    if generation > 0 {
                        let _ = shared
                            .tx
                            .send(Ev::Acked(dev.index, generation, Instant::now()));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    drop(permit.take());
                    dev.connected.store(false, Ordering::Relaxed);
                    let _ = shared
                        .tx
                        .send(Ev::ConnError(dev.index, format!("{}: {e}", dev.name)));
                    tokio::time::sleep(jitter(backoff, dev.index)).await;
                    backoff = (backoff * 2).min(shared.reconnect_max);
                    permit = shared.gate.clone().acquire_owned().await.ok();
                }
            }
            let _ = &permit;
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Like the agent: announce presence, subscribe, re-send the latest status.
fn on_connected(dev: &Dev, shared: &Shared) {
    // A clean session drops whatever was in flight on the old connection.
    lock(&dev.in_flight).clear();
    dev.connected.store(true, Ordering::Relaxed);
    if dev
        .client
        .try_publish(topics::online(&dev.name), QoS::AtLeastOnce, true, "online")
        .is_ok()
    {
        lock(&dev.in_flight).push_back(0);
    }
    let _ = dev
        .client
        .try_subscribe(topics::desired(&dev.name), QoS::AtLeastOnce);
    let _ = shared.tx.send(Ev::Connected(dev.index, Instant::now()));
    if dev.held.load(Ordering::Relaxed) > 0 {
        send_status(dev, shared);
    }
}

fn on_desired(dev: &Arc<Dev>, shared: &Arc<Shared>, payload: &[u8]) {
    let held = dev.held.load(Ordering::Relaxed);
    // Verified against generation 0 so that a republished state (same generation) is
    // seen too; only a newer one is acknowledged.
    match open_desired(payload, &shared.key, &dev.name, 0, &dev.seal) {
        Ok(desired) => {
            let ev = Ev::Desired(dev.index, desired.generation, Instant::now());
            let _ = shared.tx.send(ev);
            if desired.generation > held {
                dev.held.store(desired.generation, Ordering::Relaxed);
                for w in desired.workloads.iter().filter(|w| w.revision > 0) {
                    let _ = shared
                        .tx
                        .send(Ev::Revision(dev.index, w.revision, Instant::now()));
                }
                start_workloads(dev, shared, desired.generation, desired.workloads);
            }
        }
        Err(AuthError::Stale { .. }) => {}
        Err(e) => {
            let _ = shared.tx.send(Ev::Rejected(format!("{}: {e}", dev.name)));
        }
    }
}

/// Acknowledges a new generation at once; with `--health`, its workloads run (and are
/// reported) once the start delay has passed, unless a newer generation came meanwhile.
fn start_workloads(
    dev: &Arc<Dev>,
    shared: &Arc<Shared>,
    generation: u64,
    workloads: Vec<WorkloadSpec>,
) {
    let Some(sim) = &shared.health else {
        return send_status(dev, shared);
    };
    if sim.ready_after.is_zero() {
        return run_workloads(dev, shared, sim, &workloads);
    }
    // Until then the status reports what ran before, as the agent does.
    send_status(dev, shared);
    let (dev, shared) = (dev.clone(), shared.clone());
    tokio::spawn(async move {
        let Some(sim) = &shared.health else { return };
        tokio::time::sleep(sim.ready_after).await;
        if dev.held.load(Ordering::Relaxed) == generation {
            run_workloads(&dev, &shared, sim, &workloads);
        }
    });
}

fn run_workloads(dev: &Dev, shared: &Shared, sim: &HealthSim, workloads: &[WorkloadSpec]) {
    let mut running = lock(&dev.running);
    *running = started(&running, workloads, sim, now_ms());
    drop(running);
    send_status(dev, shared);
}

/// Queues a status reporting the held generation (a full snapshot, as the agent sends).
fn send_status(dev: &Dev, shared: &Shared) {
    let generation = dev.held.load(Ordering::Relaxed);
    let workloads = lock(&dev.running)
        .iter()
        .map(|r| r.status.clone())
        .collect();
    let status = DeviceStatus {
        device: dev.name.clone(),
        observed_generation: generation,
        time_ms: now_ms(),
        workloads,
        capacity: Capacity {
            memory_bytes: 1 << 30,
            cpu_millis: 4000,
            memory_reserved_bytes: 0,
            disk_free_bytes: 8 << 30,
            low_disk: false,
        },
    };
    let payload = match seal_status(&status, dev.credential.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{}: cannot seal status: {e}", dev.name);
            let _ = shared.tx.send(Ev::Rejected(msg));
            return;
        }
    };
    match dev
        .client
        .try_publish(dev.status_topic.clone(), QoS::AtLeastOnce, false, payload)
    {
        Ok(()) => lock(&dev.in_flight).push_back(generation),
        Err(e) => {
            let msg = format!("{}: cannot queue status: {e}", dev.name);
            let _ = shared.tx.send(Ev::Rejected(msg));
        }
    }
}

/// Sends the status every heartbeat interval while one is set, starting at this device's
/// phase (`index / n` of the interval after the interval was set).
async fn heartbeat(dev: Arc<Dev>, shared: Arc<Shared>) {
    let mut interval_ms = shared.heartbeat_ms.clone();
    loop {
        let ms = *interval_ms.borrow_and_update();
        if ms == 0 {
            if interval_ms.changed().await.is_err() {
                return;
            }
            continue;
        }
        let period = Duration::from_millis(ms);
        let phase = period.mul_f64(dev.index as f64 / shared.n.max(1) as f64);
        let mut next = Instant::now() + phase;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    if dev.held.load(Ordering::Relaxed) > 0 && dev.connected.load(Ordering::Relaxed) {
                        send_status(&dev, &shared);
                    }
                    next += period;
                }
                changed = interval_ms.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}
