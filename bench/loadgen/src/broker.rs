//! `drover-loadgen broker`: an MQTT broker measured alone, with the hub's traffic pattern
//! but without the hub (issue 8, item 7; driven by bench/broker.py).
//!
//! One client plays the hub: it connects as `drover-hub`, subscribes to
//! `drover/v1/dev/+/status` and `…/+/online` (QoS 1), and publishes one retained QoS 1
//! "desired" message per device, one after another, as the hub's MQTT loop does. N clients
//! play agents: last will and retained `online` (QoS 1), a QoS 1 subscription to their own
//! `desired` topic, and a QoS 1 status reply to every desired message. Payloads are opaque
//! bytes of realistic sizes (the broker never looks inside): 8 bytes of round number, then
//! padding; a status also carries the device's index.
//!
//! Phases: connect (with `--order publish-first` the hub has published round 1 before any
//! device connects, as after a hub restart, so round 1 arrives as retained messages),
//! idle, then fan-out rounds. Prints one JSON object with times, the broker's RSS and CPU
//! time (from /proc) and the CPU everyone else on the machine used meanwhile.
//! This module must never judge the numbers: bench/broker.py does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::{Res, cpu_ticks, jitter, round3, rss_kib, ticks_s};

const ROOT: &str = "drover/v1/dev";

#[derive(clap::Args)]
pub struct Args {
    /// `host:port` of the broker.
    #[arg(long)]
    broker: String,
    /// JSON `{"hub_credential": "...", "devices": [[name, credential], ...]}`.
    #[arg(long)]
    creds: PathBuf,
    /// The broker's pid, for RSS and CPU time.
    #[arg(long)]
    broker_pid: u32,
    /// `publish-first`: retained desired states exist before the devices connect (hub
    /// restart); `connect-first`: devices connect to an empty broker.
    #[arg(long, default_value = "publish-first")]
    order: String,
    /// Fan-out rounds after the connect phase.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    #[arg(long, default_value_t = 600)]
    desired_bytes: usize,
    #[arg(long, default_value_t = 300)]
    status_bytes: usize,
    /// Connection attempts in flight at once: at most Mosquitto's listen backlog (100),
    /// or the kernel drops SYNs and the clients wait a 1 s retransmission.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Seconds allowed for each phase.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
}

enum Ev {
    Connected(usize),
    Subscribed(usize),
    /// Device `.0` received the desired message of round `.1`.
    Desired(usize, u64),
    /// The hub received device `.0`'s status for round `.1`.
    Status(usize, u64),
    HubReady,
    Error(String),
}

/// What the main loop knows about every device, and the broker's resource use.
struct Tally {
    n: usize,
    connected: Vec<bool>,
    subscribed: Vec<bool>,
    desired: Vec<u64>,
    status: Vec<u64>,
    /// Devices connected, subscribed; devices that reached round `r` (index r).
    n_connected: usize,
    n_subscribed: usize,
    n_desired: Vec<usize>,
    n_status: Vec<usize>,
    errors: u64,
    samples: Vec<String>,
    pid: u32,
    rss_peak: u64,
}

impl Tally {
    fn new(n: usize, pid: u32) -> Tally {
        Tally {
            n,
            connected: vec![false; n],
            subscribed: vec![false; n],
            desired: vec![0; n],
            status: vec![0; n],
            n_connected: 0,
            n_subscribed: 0,
            n_desired: Vec::new(),
            n_status: Vec::new(),
            errors: 0,
            samples: Vec::new(),
            pid,
            rss_peak: 0,
        }
    }

    fn apply(&mut self, ev: Ev) {
        match ev {
            Ev::Connected(i) if !self.connected[i] => {
                self.connected[i] = true;
                self.n_connected += 1;
            }
            Ev::Subscribed(i) if !self.subscribed[i] => {
                self.subscribed[i] = true;
                self.n_subscribed += 1;
            }
            Ev::Desired(i, r) => raise(&mut self.desired[i], r, &mut self.n_desired),
            Ev::Status(i, r) if i < self.n => raise(&mut self.status[i], r, &mut self.n_status),
            Ev::Error(e) => {
                self.errors += 1;
                if self.samples.len() < 5 {
                    self.samples.push(e);
                }
            }
            _ => {}
        }
    }

    fn count(counts: &[usize], r: u64) -> usize {
        counts.get(r as usize).copied().unwrap_or(0)
    }

    fn sample(&mut self) {
        self.rss_peak = self.rss_peak.max(rss_kib(self.pid).unwrap_or(0));
    }
}

/// A device reached round `r`: count it once for every round it newly reached.
fn raise(held: &mut u64, r: u64, counts: &mut Vec<usize>) {
    if r as usize >= counts.len() {
        counts.resize(r as usize + 1, 0);
    }
    for k in (*held + 1)..=r {
        counts[k as usize] += 1;
    }
    *held = (*held).max(r);
}

/// CPU ticks of the broker, of this process and of the whole machine (busy time).
#[derive(Clone, Copy)]
struct Cpu {
    broker: u64,
    me: u64,
    machine: u64,
}

impl Cpu {
    fn now(pid: u32) -> Res<Cpu> {
        Ok(Cpu {
            broker: cpu_ticks(pid)?,
            me: cpu_ticks(std::process::id())?,
            machine: machine_busy_ticks()?,
        })
    }

    fn since(self, pid: u32) -> Res<Value> {
        let now = Cpu::now(pid)?;
        let (b, m) = (now.broker - self.broker, now.me - self.me);
        let others = (now.machine - self.machine).saturating_sub(b + m);
        Ok(
            json!({"broker_cpu_s": ticks_s(b), "loadgen_cpu_s": ticks_s(m), "others_cpu_s": ticks_s(others)}),
        )
    }
}

/// Connections the kernel dropped because a listen queue was full (TcpExt ListenDrops).
fn listen_drops() -> u64 {
    let s = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(keys), Some(vals)) = (lines.next(), lines.next()) else {
        return 0;
    };
    keys.split_whitespace()
        .zip(vals.split_whitespace())
        .find(|(k, _)| *k == "ListenDrops")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// user + nice + system + irq + softirq + steal of all CPUs, from /proc/stat.
fn machine_busy_ticks() -> Res<u64> {
    let s = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |k: usize| f.get(k).copied().unwrap_or(0);
    Ok(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

pub async fn run(a: Args) -> Res<Value> {
    let text = std::fs::read_to_string(&a.creds)
        .map_err(|e| format!("cannot read {}: {e}", a.creds.display()))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", a.creds.display()))?;
    let hub_cred = doc["hub_credential"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let devices: Vec<(String, String)> = doc["devices"]
        .as_array()
        .ok_or("no devices")?
        .iter()
        .map(|d| {
            (
                d[0].as_str().unwrap_or_default().to_owned(),
                d[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let n = devices.len();
    let (host, port) = a
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--broker {:?} is not host:port", a.broker))?;
    let publish_first = match a.order.as_str() {
        "publish-first" => true,
        "connect-first" => false,
        o => {
            return Err(format!(
                "--order {o:?}: expected publish-first or connect-first"
            ));
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
    let mut t = Tally::new(n, a.broker_pid);
    let rss_start = rss_kib(a.broker_pid)?;
    let hub = hub_client(&host, port, &hub_cred, tx.clone());
    let ready = Instant::now() + Duration::from_secs(30);
    wait(&mut rx, &mut t, ready, |_, ev| {
        matches!(ev, Some(Ev::HubReady))
    })
    .await?;
    let names: Arc<Vec<String>> = Arc::new(devices.iter().map(|d| d.0.clone()).collect());

    let cpu0 = Cpu::now(a.broker_pid)?;
    let drops0 = listen_drops();
    let t0 = Instant::now();
    let mut out = json!({"n": n, "order": a.order, "rss_start_kib": rss_start});
    if publish_first {
        publish_round(&hub, &names, 1, a.desired_bytes).await?;
        out["preload_publish_s"] = json!(round3(t0.elapsed().as_secs_f64()));
    }
    let gate = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
    let dev_cfg = Arc::new((host, port, a.status_bytes));
    for (i, (name, cred)) in devices.into_iter().enumerate() {
        tokio::spawn(device(
            i,
            name,
            cred,
            dev_cfg.clone(),
            tx.clone(),
            gate.clone(),
        ));
    }
    let deadline = t0 + Duration::from_secs(a.timeout);
    let mut marks = Marks::default();
    let goal = if publish_first { 1 } else { 0 };
    let done = |t: &Tally, m: &mut Marks, now: f64| {
        m.note(t, now, goal);
        m.connect.is_some() && m.subscribe.is_some() && (goal == 0 || m.status.is_some())
    };
    wait_until(&mut rx, &mut t, deadline, t0, |t, now| {
        done(t, &mut marks, now)
    })
    .await?;
    out["connect"] = json!({
        "connect_all_s": marks.connect, "subscribed_all_s": marks.subscribe,
        "retained_all_s": marks.desired, "status_all_s": marks.status,
        "cpu": cpu0.since(a.broker_pid)?, "rss_kib": rss_kib(a.broker_pid)?, "rss_peak_kib": t.rss_peak,
        "listen_drops": listen_drops() - drops0,
    });

    let idle_cpu = Cpu::now(a.broker_pid)?;
    let idle_end = Instant::now() + Duration::from_secs(a.idle_secs);
    let _ = wait(&mut rx, &mut t, idle_end, |_, _| false).await;
    out["idle"] = json!({"cpu": idle_cpu.since(a.broker_pid)?, "rss_kib": rss_kib(a.broker_pid)?});

    let mut rounds = Vec::new();
    for r in (goal + 1)..=(goal + a.rounds) {
        t.rss_peak = 0;
        let cpu = Cpu::now(a.broker_pid)?;
        let start = Instant::now();
        publish_round(&hub, &names, r, a.desired_bytes).await?;
        let published = start.elapsed().as_secs_f64();
        let mut m = Marks::default();
        let deadline = start + Duration::from_secs(a.timeout);
        wait_until(&mut rx, &mut t, deadline, start, |t, now| {
            m.note(t, now, r);
            m.status.is_some()
        })
        .await
        .map_err(|e| format!("round {r}: {e}"))?;
        rounds.push(json!({
            "round": r, "publish_s": round3(published), "devices_s": m.desired, "hub_s": m.status,
            "cpu": cpu.since(a.broker_pid)?, "rss_peak_kib": t.rss_peak,
        }));
    }
    out["rounds"] = json!(rounds);
    out["rss_end_kib"] = json!(rss_kib(a.broker_pid)?);
    out["errors"] = json!(t.errors);
    out["error_samples"] = json!(t.samples);
    out["ok"] = json!(true);
    Ok(out)
}

/// When (seconds after the phase started) all devices were connected, subscribed, had
/// round `r`'s desired message, and the hub had all their round-`r` statuses.
#[derive(Default)]
struct Marks {
    connect: Option<f64>,
    subscribe: Option<f64>,
    desired: Option<f64>,
    status: Option<f64>,
}

impl Marks {
    fn note(&mut self, t: &Tally, now: f64, r: u64) {
        let now = Some(round3(now));
        if self.connect.is_none() && t.n_connected == t.n {
            self.connect = now;
        }
        if self.subscribe.is_none() && t.n_subscribed == t.n {
            self.subscribe = now;
        }
        if r > 0 && self.desired.is_none() && Tally::count(&t.n_desired, r) == t.n {
            self.desired = now;
        }
        if r > 0 && self.status.is_none() && Tally::count(&t.n_status, r) == t.n {
            self.status = now;
        }
    }
}

/// Takes events until `stop` says so or the deadline passes (an error saying how far it got).
async fn wait_until(
    rx: &mut mpsc::UnboundedReceiver<Ev>,
    t: &mut Tally,
    deadline: Instant,
    start: Instant,
    mut stop: impl FnMut(&Tally, f64) -> bool,
) -> Res<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return Err("every client task ended".to_owned()) };
                t.apply(ev);
                // Draining what is already queued before checking keeps this linear.
                while let Ok(ev) = rx.try_recv() {
                    t.apply(ev);
                }
                if stop(t, start.elapsed().as_secs_f64()) {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                t.sample();
                if Instant::now() > deadline {
                    let r = t.n_status.len().saturating_sub(1) as u64;
                    return Err(format!(
                        "timed out: {}/{} connected, {}/{} subscribed, {}/{} statuses of round {r} at the hub ({} errors: {:?})",
                        t.n_connected, t.n, t.n_subscribed, t.n, Tally::count(&t.n_status, r), t.n, t.errors, t.samples
                    ));
                }
            }
        }
    }
}

/// Takes events until `stop` accepts one or `until` passes (then Ok too).
async fn wait(
    rx: &mut mpsc::UnboundedReceiver<Ev>,
    t: &mut Tally,
    until: Instant,
    stop: impl Fn(&Tally, &Option<Ev>) -> bool,
) -> Res<()> {
    loop {
        tokio::select! {
            ev = rx.recv() => {
                if stop(t, &ev) {
                    return Ok(());
                }
                match ev {
                    Some(ev) => t.apply(ev),
                    None => return Err("every client task ended".to_owned()),
                }
            }
            _ = tokio::time::sleep_until(until.into()) => {
                t.sample();
                return Ok(());
            }
        }
    }
}

fn hub_client(host: &str, port: u16, cred: &str, tx: mpsc::UnboundedSender<Ev>) -> AsyncClient {
    let mut opts = MqttOptions::new("drover-hub", host, port);
    opts.set_credentials("drover-hub", cred)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(512 * 1024, 512 * 1024)
        .set_clean_session(true);
    let (client, mut el) = AsyncClient::new(opts, 64);
    let sub = client.clone();
    tokio::spawn(async move {
        let mut subacks = 0;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for leaf in ["status", "online"] {
                        let _ = sub.try_subscribe(format!("{ROOT}/+/{leaf}"), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == 2 {
                        let _ = tx.send(Ev::HubReady);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/status") => {
                    if let Some((r, i)) = round_and_index(&p.payload) {
                        let _ = tx.send(Ev::Status(i, r));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Ev::Error(format!("hub client: {e}")));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    client
}

async fn publish_round(hub: &AsyncClient, names: &[String], r: u64, size: usize) -> Res<()> {
    let mut payload = vec![0u8; size.max(8)];
    payload[..8].copy_from_slice(&r.to_be_bytes());
    for name in names {
        hub.publish(
            format!("{ROOT}/{name}/desired"),
            QoS::AtLeastOnce,
            true,
            payload.clone(),
        )
        .await
        .map_err(|e| format!("hub publish: {e}"))?;
    }
    Ok(())
}

fn round_and_index(p: &[u8]) -> Option<(u64, usize)> {
    let r = u64::from_be_bytes(p.get(..8)?.try_into().ok()?);
    let i = u32::from_be_bytes(p.get(8..12)?.try_into().ok()?);
    Some((r, i as usize))
}

/// One simulated agent (see the module doc).
async fn device(
    i: usize,
    name: String,
    cred: String,
    cfg: Arc<(String, u16, usize)>,
    tx: mpsc::UnboundedSender<Ev>,
    gate: Arc<Semaphore>,
) {
    let (host, port, status_bytes) = (cfg.0.clone(), cfg.1, cfg.2);
    let online = format!("{ROOT}/{name}/online");
    let desired = format!("{ROOT}/{name}/desired");
    let status = format!("{ROOT}/{name}/status");
    let mut opts = MqttOptions::new(name.clone(), host, port);
    opts.set_credentials(name.clone(), cred)
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(512 * 1024, 512 * 1024)
        .set_clean_session(true)
        .set_last_will(LastWill::new(&online, "offline", QoS::AtLeastOnce, true));
    let (client, mut el) = AsyncClient::new(opts, 16);
    el.network_options.set_connection_timeout(120);
    let mut permit = gate.clone().acquire_owned().await.ok();
    let mut backoff = Duration::from_millis(200);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                permit = None;
                backoff = Duration::from_millis(200);
                let _ = client.try_publish(&online, QoS::AtLeastOnce, true, "online");
                let _ = client.try_subscribe(&desired, QoS::AtLeastOnce);
                let _ = tx.send(Ev::Connected(i));
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = tx.send(Ev::Subscribed(i));
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == desired => {
                let Some(r) = p.payload.get(..8).and_then(|b| b.try_into().ok()) else {
                    continue;
                };
                let r = u64::from_be_bytes(r);
                let _ = tx.send(Ev::Desired(i, r));
                let mut reply = vec![0u8; status_bytes.max(12)];
                reply[..8].copy_from_slice(&r.to_be_bytes());
                reply[8..12].copy_from_slice(&(i as u32).to_be_bytes());
                if let Err(e) = client.try_publish(&status, QoS::AtLeastOnce, false, reply) {
                    let _ = tx.send(Ev::Error(format!("{name}: cannot queue status: {e}")));
                }
            }
            Ok(_) => {}
            Err(e) => {
                drop(permit.take());
                let _ = tx.send(Ev::Error(format!("{name}: {e}")));
                tokio::time::sleep(jitter(backoff, i)).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                permit = gate.clone().acquire_owned().await.ok();
            }
        }
        let _ = &permit;
    }
}
