//! `/metrics` at scale: renders the scrape body of a sample fleet (a real store with N
//! devices, a Deployment of C containers on each, statuses folded by the controller and
//! two telemetry samples per device in the cache) R times and prints the median, min and
//! max time and the body size, and the same for its gzip compression (what a scraper that
//! sends `Accept-Encoding: gzip` gets).
//!
//!     cargo run -p drover-hub --example metrics_scrape -- [DEVICES] [CONTAINERS] [ROUNDS] [--print]
#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (devices, containers, rounds) = (num(0, 10_000), num(1, 2), num(2, 11));
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let fleet = drover_hub::metrics::sample::build(dir.path(), devices, containers).unwrap();
    eprintln!(
        "built {devices} devices x {containers} containers in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    let mut gzip_times = Vec::new();
    let (mut bytes, mut gzip_bytes) = (0, 0);
    for _ in 0..rounds {
        let t = Instant::now();
        let body = drover_hub::metrics::render(
            &fleet.read,
            &fleet.telemetry,
            &fleet.mirrors,
            fleet.now_ms,
        )
        .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
        let t = Instant::now();
        gzip_bytes = drover_hub::metrics::encoding::gzip(body.as_bytes())
            .unwrap()
            .len();
        gzip_times.push(t.elapsed().as_secs_f64() * 1000.0);
        if args.iter().any(|a| a == "--print") {
            print!("{body}");
            return;
        }
    }
    let lines =
        drover_hub::metrics::render(&fleet.read, &fleet.telemetry, &fleet.mirrors, fleet.now_ms)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
    times.sort_by(f64::total_cmp);
    gzip_times.sort_by(f64::total_cmp);
    println!(
        "devices={devices} containers={containers} rounds={rounds} scrape_ms median={:.1} min={:.1} max={:.1} body_bytes={bytes} samples={lines} gzip_ms median={:.1} min={:.1} max={:.1} gzip_bytes={gzip_bytes}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        gzip_times[gzip_times.len() / 2],
        gzip_times[0],
        gzip_times[gzip_times.len() - 1]
    );
}
