//! `drover-loadgen`: the hub fan-out benchmark's device simulator (issues 5 and 8).
//!
//! - `register`: registers N devices through the hub's API, one `POST /v1/devices` each
//!   (several keep-alive connections in flight), and writes their credentials to a JSON
//!   file; bench/fanout.py's fallback for a hub without `device import`.
//! - `fleet`: N devices, each its own MQTT client in one single-threaded tokio runtime,
//!   behaving like agents on the wire (module `sim`), kept up across measurements and
//!   driven by JSON-line commands (module `fleet`): connect, apply → acknowledged (with
//!   an API prober, module `probe`), heartbeats, hub restarts; with `--health` they
//!   report their workloads running and ready (module `health`) for rollouts (issue 11).
//!
//! Measures and reports; judging figures against targets is bench/fanout.py's job.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod fleet;
mod health;
mod probe;
mod sim;
mod telemetry;

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
    /// Simulated devices that stay up across measurements, driven by JSON-line commands on
    /// stdin (bench/fanout.py); see the `fleet` module.
    Fleet(fleet::Args),
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
            Cmd::Fleet(args) => fleet::run(args).await,
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

/// `Authorization: Bearer TOKEN\r\n` from $DROVER_HUB_TOKEN (the hub's admin token, which
/// every `/v1` route needs), or nothing when it is not set.
pub(crate) fn auth_header() -> String {
    match std::env::var("DROVER_HUB_TOKEN") {
        Ok(t) if !t.trim().is_empty() => format!("Authorization: Bearer {}\r\n", t.trim()),
        _ => String::new(),
    }
}

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
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            auth_header(),
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
// Shared by the subcommands

/// One counter of `GET /v1/stats`.
async fn stat(http: &mut Http, name: &str) -> Res<u64> {
    let (code, v) = http.request("GET", "/v1/stats", None).await?;
    if code != 200 {
        return Err(format!("GET /v1/stats: HTTP {code}: {v}"));
    }
    Ok(v[name].as_u64().unwrap_or(0))
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
