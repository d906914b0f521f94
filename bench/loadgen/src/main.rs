//! `drover-loadgen`: the hub fan-out benchmark's device simulator (issue 5, item 3).
//!
//! - `register`: registers N devices through the hub's API (`POST /v1/devices`, several
//!   keep-alive connections in flight) and writes their credentials to a JSON file.
//! - `run`: connects every device as its own MQTT client (client id = user name = device
//!   name, password = credential) in one single-threaded tokio runtime, one rumqttc event
//!   loop per device. Each device verifies every desired state with the hub's pinned key
//!   (`verify_desired`) and acknowledges it with a status sealed by its credential
//!   (`seal_status`, `observed_generation` = the generation received, no workloads).
//!   Then it runs `drover-hub apply -f MANIFEST` and measures the time until every device
//!   has acknowledged a newer generation (PUBACK from the broker) and until the hub has
//!   recorded all of those statuses (`status_accepted` in `GET /v1/stats`), with the hub's
//!   (and optionally the broker's) RSS and CPU time from /proc. Prints one JSON object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use drover_protocol::auth::{AuthError, seal_status, verify_desired};
use drover_protocol::{Capacity, DeviceStatus, Name, topics};
use ed25519_dalek::VerifyingKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

mod broker;

type Res<T> = Result<T, String>;

#[derive(Parser)]
#[command(
    name = "drover-loadgen",
    about = "Simulated Drover devices for the hub fan-out benchmark"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register N devices through the hub API and write their credentials as JSON.
    Register {
        /// `host:port` of the hub's HTTP API.
        #[arg(long)]
        api: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value = "sim")]
        prefix: String,
        /// Label given to every device, `key=value`.
        #[arg(long, default_value = "fleet=bench")]
        label: String,
        /// Requests in flight (one keep-alive connection each).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Connect every device, then time `drover-hub apply` until all have acknowledged.
    Run {
        /// `host:port` of the hub's HTTP API.
        #[arg(long)]
        api: String,
        /// `host:port` of the MQTT broker the devices use.
        #[arg(long)]
        broker: String,
        /// Credentials written by `register`.
        #[arg(long)]
        creds: PathBuf,
        #[arg(long)]
        hub_pid: u32,
        /// An external broker's pid, to report its RSS and CPU too.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// The `drover-hub` binary used for `apply`.
        #[arg(long)]
        hub_bin: PathBuf,
        /// Deployment manifest selecting every simulated device.
        #[arg(long)]
        manifest: PathBuf,
        /// Connection attempts in flight at once.
        #[arg(long, default_value_t = 500)]
        connect_concurrency: usize,
        /// Seconds allowed for connecting and for the rollout (each).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Seconds of idle measurement once everything is connected and in sync.
        #[arg(long, default_value_t = 3)]
        idle_secs: u64,
    },
    /// Measure an MQTT broker alone with the hub's traffic pattern (bench/broker.py).
    Broker(broker::Args),
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Register {
                api,
                count,
                prefix,
                label,
                concurrency,
                out,
            } => register(&api, count, &prefix, &label, concurrency, &out).await,
            Cmd::Run {
                api,
                broker,
                creds,
                hub_pid,
                broker_pid,
                hub_bin,
                manifest,
                connect_concurrency,
                timeout,
                idle_secs,
            } => {
                let opts = RunOpts {
                    api,
                    broker,
                    hub_pid,
                    broker_pid,
                    hub_bin,
                    manifest,
                    connect_concurrency,
                    timeout: Duration::from_secs(timeout),
                    idle: Duration::from_secs(idle_secs),
                };
                run(&opts, &creds).await
            }
            Cmd::Broker(args) => broker::run(args).await,
        }
    });
    // Exit at once: the device tasks are not worth tearing down one by one.
    match result {
        Ok(v) => {
            println!("{v}");
            std::process::exit(0);
        }
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("drover-loadgen: {msg}");
    std::process::exit(1)
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (keep-alive, Content-Length bodies): enough for the hub API.

struct Http {
    addr: String,
    conn: Option<TcpStream>,
}

impl Http {
    fn new(addr: &str) -> Http {
        Http {
            addr: addr.to_owned(),
            conn: None,
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        // One retry on a fresh connection: the server may have closed an idle one.
        match self.try_request(method, path, body).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.conn = None;
                self.try_request(method, path, body).await
            }
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| format!("cannot connect to the hub API at {}: {e}", self.addr))?;
            let _ = s.set_nodelay(true);
            self.conn = Some(s);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".to_owned());
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let io = |e: std::io::Error| format!("hub API {method} {path}: {e}");
        conn.write_all(req.as_bytes()).await.map_err(io)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = conn.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(format!("hub API {method} {path}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("hub API {method} {path}: bad answer {head:?}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())
                    .flatten()
            })
            .ok_or_else(|| format!("hub API {method} {path}: no Content-Length in {head:?}"))?;
        while buf.len() < head_end + len {
            let n = conn.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(format!("hub API {method} {path}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = &buf[head_end..head_end + len];
        let v = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).to_string()));
        Ok((status, v))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// register

async fn register(
    api: &str,
    count: usize,
    prefix: &str,
    label: &str,
    concurrency: usize,
    out: &PathBuf,
) -> Res<Value> {
    let (lk, lv) = label
        .split_once('=')
        .ok_or_else(|| format!("--label {label:?} is not key=value"))?;
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, api, prefix, lk, lv) = (
            next.clone(),
            api.to_owned(),
            prefix.to_owned(),
            lk.to_owned(),
            lv.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut http = Http::new(&api);
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(got);
                }
                let name = format!("{prefix}-{i}");
                let body = json!({"name": name, "labels": {lk.clone(): lv.clone()}});
                let (code, v) = http.request("POST", "/v1/devices", Some(&body)).await?;
                if code != 200 {
                    return Err(format!("POST /v1/devices {name}: HTTP {code}: {v}"));
                }
                let cred = v["credential"]
                    .as_str()
                    .ok_or("answer without credential")?
                    .to_owned();
                let key = v["public_key"]
                    .as_str()
                    .ok_or("answer without public_key")?
                    .to_owned();
                got.push((i, name, cred, key));
                if (i + 1) % 1000 == 0 {
                    eprintln!(
                        "registered {} devices in {:.1} s",
                        i + 1,
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await.map_err(|e| format!("register task: {e}"))??);
    }
    all.sort_by_key(|d| d.0);
    let public_key = all.first().map(|d| d.3.clone()).unwrap_or_default();
    let devices: Vec<Value> = all.iter().map(|d| json!([d.1, d.2])).collect();
    let secs = start.elapsed().as_secs_f64();
    let doc = json!({"public_key": public_key, "devices": devices});
    std::fs::write(out, doc.to_string())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(json!({"registered": count, "register_s": round3(secs)}))
}

// ---------------------------------------------------------------------------------------
// run

struct RunOpts {
    api: String,
    broker: String,
    hub_pid: u32,
    broker_pid: Option<u32>,
    hub_bin: PathBuf,
    manifest: PathBuf,
    connect_concurrency: usize,
    timeout: Duration,
    idle: Duration,
}

enum Ev {
    Connected(usize),
    /// The broker acknowledged this device's status for this generation.
    Acked(usize, u64),
    ConnError(String),
    Rejected(String),
}

struct Device {
    name: Name,
    credential: String,
}

async fn run(o: &RunOpts, creds: &PathBuf) -> Res<Value> {
    let text = std::fs::read_to_string(creds)
        .map_err(|e| format!("cannot read {}: {e}", creds.display()))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", creds.display()))?;
    let key_bytes = STANDARD
        .decode(doc["public_key"].as_str().unwrap_or_default())
        .map_err(|e| format!("bad public key: {e}"))?;
    let key_arr: [u8; 32] = key_bytes
        .try_into()
        .map_err(|_| "public key is not 32 bytes".to_owned())?;
    let key = VerifyingKey::from_bytes(&key_arr).map_err(|e| format!("bad public key: {e}"))?;
    let mut devices = Vec::new();
    for d in doc["devices"].as_array().ok_or("no devices")? {
        let name = Name::new(d[0].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        devices.push(Device {
            name,
            credential: d[1].as_str().unwrap_or_default().to_owned(),
        });
    }
    let n = devices.len();
    let (host, port) = o
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--broker {:?} is not host:port", o.broker))?;

    let mut http = Http::new(&o.api);
    let accepted_before = stat(&mut http, "status_accepted").await?;

    // Connect everything.
    let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
    let gate = Arc::new(Semaphore::new(o.connect_concurrency.max(1)));
    let start = Instant::now();
    let cpu0 = cpu_ticks(o.hub_pid)?;
    for (i, d) in devices.into_iter().enumerate() {
        tokio::spawn(device(
            i,
            d,
            host.clone(),
            port,
            key,
            tx.clone(),
            gate.clone(),
        ));
    }
    drop(tx);

    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut err_samples: Vec<String> = Vec::new();
    let mut note = |errors: &mut HashMap<String, u64>, kind: &str, msg: String| {
        *errors.entry(kind.to_owned()).or_default() += 1;
        if err_samples.len() < 5 {
            err_samples.push(msg);
        }
    };
    let mut connected = vec![false; n];
    let mut acked = vec![0u64; n];
    let (mut n_conn, mut n_synced) = (0usize, 0usize);
    let mut connect_s = None;
    let deadline = start + o.timeout;
    let mut peak_connect = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while n_synced < n {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Ev::Connected(i)) => {
                    if !connected[i] {
                        connected[i] = true;
                        n_conn += 1;
                        if n_conn == n {
                            connect_s = Some(start.elapsed().as_secs_f64());
                        }
                    }
                }
                Some(Ev::Acked(i, g)) => {
                    if acked[i] == 0 && g > 0 {
                        n_synced += 1;
                    }
                    acked[i] = acked[i].max(g);
                }
                Some(Ev::ConnError(e)) => note(&mut errors, "connect_or_connection", e),
                Some(Ev::Rejected(e)) => note(&mut errors, "desired_rejected", e),
                None => return Err("every device task ended".to_owned()),
            },
            _ = tick.tick() => {
                peak_connect = peak_connect.max(rss_kib(o.hub_pid).unwrap_or(0));
                if Instant::now() > deadline {
                    return Ok(json!({
                        "n": n, "ok": false,
                        "failure": format!("timed out after {} s: {n_conn}/{n} connected, {n_synced}/{n} acknowledged their first desired state", o.timeout.as_secs()),
                        "errors": errors, "error_samples": err_samples,
                        "hub_rss_peak_kib": peak_connect,
                    }));
                }
            }
        }
    }
    let synced_s = start.elapsed().as_secs_f64();
    let connect_s = connect_s.unwrap_or(synced_s);
    // Wait until the hub has recorded every first status (or the timeout).
    let hub_synced_s = wait_accepted(&mut http, accepted_before + n as u64, deadline).await?;
    let cpu_connect = cpu_ticks(o.hub_pid)? - cpu0;

    // Idle: everything connected and in sync.
    let idle_cpu0 = cpu_ticks(o.hub_pid)?;
    let broker_idle_cpu0 = o.broker_pid.map(cpu_ticks).transpose()?;
    let idle_start = Instant::now();
    drain_until(&mut rx, &mut errors, idle_start + o.idle).await;
    let idle_wall = idle_start.elapsed().as_secs_f64();
    let hub_idle_cpu = ticks_s(cpu_ticks(o.hub_pid)? - idle_cpu0);
    let hub_rss_idle = rss_kib(o.hub_pid)?;
    let broker_idle = match (o.broker_pid, broker_idle_cpu0) {
        (Some(p), Some(c0)) => Some((rss_kib(p)?, ticks_s(cpu_ticks(p)? - c0))),
        _ => None,
    };

    // The rollout.
    let before = acked.clone();
    let accepted_base = stat(&mut http, "status_accepted").await?;
    let hub_cpu_r0 = cpu_ticks(o.hub_pid)?;
    let broker_cpu_r0 = o.broker_pid.map(cpu_ticks).transpose()?;
    let t0 = Instant::now();
    let mut apply = tokio::process::Command::new(&o.hub_bin)
        .arg("apply")
        .arg("-f")
        .arg(&o.manifest)
        .env("DROVER_HUB_API", format!("http://{}", o.api))
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {} apply: {e}", o.hub_bin.display()))?;
    let mut apply_s = None;
    let mut apply_status = None;
    let mut done = 0usize;
    let mut peak = hub_rss_idle;
    let mut broker_peak = broker_idle.map(|b| b.0).unwrap_or(0);
    let deadline = t0 + o.timeout;
    let mut fail_msg = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut first_ack = None;
    while done < n {
        tokio::select! {
            st = apply.wait(), if apply_s.is_none() => {
                apply_s = Some(t0.elapsed().as_secs_f64());
                let st = st.map_err(|e| format!("apply: {e}"))?;
                apply_status = Some(st.success());
                if !st.success() {
                    fail_msg = Some(format!("drover-hub apply failed: {st}"));
                    break;
                }
            }
            ev = rx.recv() => match ev {
                Some(Ev::Acked(i, g)) => {
                    if g > before[i] && acked[i] <= before[i] {
                        done += 1;
                        first_ack.get_or_insert_with(|| t0.elapsed().as_secs_f64());
                    }
                    acked[i] = acked[i].max(g);
                }
                Some(Ev::ConnError(e)) => note(&mut errors, "connect_or_connection", e),
                Some(Ev::Rejected(e)) => note(&mut errors, "desired_rejected", e),
                Some(Ev::Connected(_)) => {}
                None => return Err("every device task ended".to_owned()),
            },
            _ = tick.tick() => {
                peak = peak.max(rss_kib(o.hub_pid).unwrap_or(0));
                if let Some(p) = o.broker_pid { broker_peak = broker_peak.max(rss_kib(p).unwrap_or(0)); }
                if Instant::now() > deadline {
                    fail_msg = Some(format!("rollout timed out after {} s: {done}/{n} devices acknowledged the new generation", o.timeout.as_secs()));
                    break;
                }
            }
        }
    }
    let rollout_devices_s = t0.elapsed().as_secs_f64();
    let rollout_hub_s = if fail_msg.is_none() {
        let s = wait_accepted_sampling(
            &mut http,
            accepted_base + n as u64,
            deadline,
            o.hub_pid,
            &mut peak,
        )
        .await?;
        s.map(|_| t0.elapsed().as_secs_f64())
    } else {
        None
    };
    if rollout_hub_s.is_none() && fail_msg.is_none() {
        fail_msg = Some("the hub did not record every acknowledging status in time".to_owned());
    }
    let hub_cpu_rollout = ticks_s(cpu_ticks(o.hub_pid)? - hub_cpu_r0);
    peak = peak.max(rss_kib(o.hub_pid)?);
    let broker_rollout = match (o.broker_pid, broker_cpu_r0) {
        (Some(p), Some(c0)) => Some(json!({
            "rss_idle_kib": broker_idle.map(|b| b.0),
            "cpu_idle_s": broker_idle.map(|b| round3(b.1)),
            "rss_peak_kib": broker_peak.max(rss_kib(p)?),
            "cpu_rollout_s": round3(ticks_s(cpu_ticks(p)? - c0)),
        })),
        _ => None,
    };
    Ok(json!({
        "n": n,
        "ok": fail_msg.is_none(),
        "failure": fail_msg,
        "connect_all_s": round3(connect_s),
        "first_sync_devices_s": round3(synced_s),
        "first_sync_hub_s": hub_synced_s.map(|t| round3(t.duration_since(start).as_secs_f64())),
        "hub_cpu_connect_s": round3(ticks_s(cpu_connect)),
        "hub_rss_connect_peak_kib": peak_connect,
        "idle_window_s": round3(idle_wall),
        "hub_rss_idle_kib": hub_rss_idle,
        "hub_cpu_idle_s": round3(hub_idle_cpu),
        "apply_cmd_s": apply_s.map(round3),
        "apply_ok": apply_status,
        "rollout_first_ack_s": first_ack.map(round3),
        "rollout_devices_s": round3(rollout_devices_s),
        "rollout_hub_s": rollout_hub_s.map(round3),
        "acknowledged": done,
        "hub_rss_peak_kib": peak,
        "hub_cpu_rollout_s": round3(hub_cpu_rollout),
        "broker": broker_rollout,
        "errors": errors,
        "error_samples": err_samples,
    }))
}

/// Keeps taking device events (so nothing queues up) until `until`.
async fn drain_until(
    rx: &mut mpsc::UnboundedReceiver<Ev>,
    errors: &mut HashMap<String, u64>,
    until: Instant,
) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Ev::ConnError(_)) => *errors.entry("connect_or_connection".to_owned()).or_default() += 1,
                Some(Ev::Rejected(_)) => *errors.entry("desired_rejected".to_owned()).or_default() += 1,
                Some(_) => {}
                None => return,
            },
            _ = tokio::time::sleep_until(until.into()) => return,
        }
    }
}

async fn stat(http: &mut Http, name: &str) -> Res<u64> {
    let (code, v) = http.request("GET", "/v1/stats", None).await?;
    if code != 200 {
        return Err(format!("GET /v1/stats: HTTP {code}: {v}"));
    }
    Ok(v[name].as_u64().unwrap_or(0))
}

async fn wait_accepted(http: &mut Http, target: u64, deadline: Instant) -> Res<Option<Instant>> {
    loop {
        if stat(http, "status_accepted").await? >= target {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_accepted_sampling(
    http: &mut Http,
    target: u64,
    deadline: Instant,
    pid: u32,
    peak: &mut u64,
) -> Res<Option<Instant>> {
    loop {
        *peak = (*peak).max(rss_kib(pid).unwrap_or(0));
        if stat(http, "status_accepted").await? >= target {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One simulated device: connect, subscribe, verify and acknowledge every desired state.
async fn device(
    i: usize,
    d: Device,
    host: String,
    port: u16,
    key: VerifyingKey,
    tx: mpsc::UnboundedSender<Ev>,
    gate: Arc<Semaphore>,
) {
    let name = d.name.as_str().to_owned();
    let mut opts = MqttOptions::new(name.clone(), host, port);
    opts.set_credentials(name.clone(), d.credential.clone())
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(512 * 1024, 512 * 1024)
        .set_clean_session(true);
    let (client, mut el) = AsyncClient::new(opts, 16);
    el.network_options.set_connection_timeout(60);
    let desired_topic = topics::desired(&d.name);
    let status_topic = topics::status(&d.name);
    let mut permit = gate.clone().acquire_owned().await.ok();
    let mut held = 0u64;
    let mut sent = 0u64;
    let mut backoff = Duration::from_millis(200);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                permit = None;
                backoff = Duration::from_millis(200);
                let _ = client.try_subscribe(desired_topic.clone(), QoS::AtLeastOnce);
                let _ = tx.send(Ev::Connected(i));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                match verify_desired(&p.payload, &key, &d.name, held) {
                    Ok(desired) => {
                        held = desired.generation;
                        let status = DeviceStatus {
                            device: d.name.clone(),
                            observed_generation: held,
                            time_ms: now_ms(),
                            workloads: vec![],
                            capacity: Capacity {
                                memory_bytes: 1 << 30,
                                cpu_millis: 4000,
                                memory_reserved_bytes: 0,
                                disk_free_bytes: 8 << 30,
                                low_disk: false,
                            },
                        };
                        match seal_status(&status, d.credential.as_bytes()) {
                            Ok(payload) => {
                                sent = held;
                                if let Err(e) = client.try_publish(
                                    status_topic.clone(),
                                    QoS::AtLeastOnce,
                                    false,
                                    payload,
                                ) {
                                    let _ = tx.send(Ev::Rejected(format!(
                                        "{name}: cannot queue status: {e}"
                                    )));
                                }
                            }
                            Err(e) => {
                                let _ = tx
                                    .send(Ev::Rejected(format!("{name}: cannot seal status: {e}")));
                            }
                        }
                    }
                    // A retained state seen again after a reconnect: not an error.
                    Err(AuthError::Stale { .. }) => {}
                    Err(e) => {
                        let _ = tx.send(Ev::Rejected(format!("{name}: {e}")));
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                let _ = tx.send(Ev::Acked(i, sent));
            }
            Ok(_) => {}
            Err(e) => {
                permit = None;
                let _ = tx.send(Ev::ConnError(format!("{name}: {e}")));
                tokio::time::sleep(jitter(backoff, i)).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if permit.is_none() {
                    permit = gate.clone().acquire_owned().await.ok();
                }
            }
        }
        let _ = &permit;
    }
}

fn jitter(base: Duration, i: usize) -> Duration {
    let r = (now_ms() as usize ^ i.wrapping_mul(2_654_435_761)) % 1000;
    base.mul_f64(0.5 + r as f64 / 1000.0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = s.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(get(11) + get(12)) // utime (field 14), stime (field 15)
}

/// Clock ticks to seconds (USER_HZ is 100 on Linux for every architecture we run on).
fn ticks_s(t: u64) -> f64 {
    t as f64 / 100.0
}

fn rss_kib(pid: u32) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
