//! The API prober of `drover-loadgen fleet`: while a rollout runs, one OS thread per path
//! issues `GET path` every interval on its own keep-alive connection and records each
//! answer's latency. Threads of their own (blocking sockets), so that the device
//! simulation's runtime cannot delay a probe; a late probe is not followed by a burst.
//! It only measures: it must never retry a request into a success or drop a slow one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Res, find, round3};

/// Probes running until [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Samples>)>,
}

#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    errors: u64,
    error_sample: Option<String>,
}

impl Probe {
    /// Starts one thread per path against `api` (`host:port`).
    pub fn start(api: &str, paths: &[String], interval: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = paths
            .iter()
            .map(|path| {
                let (api, p, stop) = (api.to_owned(), path.clone(), stop.clone());
                (
                    path.clone(),
                    std::thread::spawn(move || probe(&api, &p, interval, &stop)),
                )
            })
            .collect();
        Probe { stop, threads }
    }

    /// Stops the probes; latency figures per path and over all of them.
    pub fn finish(self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Samples::default();
        let mut per_path = serde_json::Map::new();
        for (path, t) in self.threads {
            let s = t.join().unwrap_or_default();
            per_path.insert(path, summary(&s));
            all.ms.extend(&s.ms);
            all.errors += s.errors;
            all.error_sample = all.error_sample.or(s.error_sample);
        }
        let mut out = summary(&all);
        out["paths"] = Value::Object(per_path);
        out
    }
}

fn summary(s: &Samples) -> Value {
    let mut v = s.ms.clone();
    v.sort_by(f64::total_cmp);
    // Nearest rank.
    let pct = |p: f64| -> Option<f64> {
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v.get(rank.max(1) - 1).map(|x| round3(*x))
    };
    json!({
        "count": v.len(),
        "errors": s.errors,
        "error_sample": s.error_sample,
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "max_ms": v.last().map(|x| round3(*x)),
    })
}

fn probe(api: &str, path: &str, interval: Duration, stop: &AtomicBool) -> Samples {
    let mut s = Samples::default();
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match get(api, path, &mut conn) {
            Ok(200) => s.ms.push(t.elapsed().as_secs_f64() * 1000.0),
            Ok(code) => note(&mut s, format!("GET {path}: HTTP {code}")),
            Err(e) => {
                conn = None;
                note(&mut s, e);
            }
        }
        if let Some(rest) = interval.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    s
}

fn note(s: &mut Samples, e: String) {
    s.errors += 1;
    s.error_sample.get_or_insert(e);
}

/// One GET on the kept connection (a new one when there is none); the answer's status.
fn get(api: &str, path: &str, conn: &mut Option<TcpStream>) -> Res<u16> {
    let io = |e: std::io::Error| format!("GET {path}: {e}");
    if conn.is_none() {
        let c = TcpStream::connect(api).map_err(io)?;
        c.set_nodelay(true).map_err(io)?;
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".to_owned());
    };
    let auth = crate::auth_header();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\n{auth}\r\n");
    c.write_all(req.as_bytes()).map_err(io)?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(format!("GET {path}: connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad answer {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .ok_or_else(|| format!("GET {path}: no Content-Length in {head:?}"))?;
    while buf.len() < head_end + len {
        let n = c.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(format!("GET {path}: connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(code)
}
