//! Cost of publishing desired states before and after sealing (issue 13): for N devices
//! (default 10,000), each with a realistic one-workload state (image, env, limits), times
//! `sign_desired` (signed only, as before) and `seal_desired` (HPKE to the device's key,
//! then signed) over all N on one thread, R times (default 5); also the hub's parallel
//! shape (one thread per core). JSON on stdout, milliseconds per N states.
//!
//!   cargo run --release -p drover-protocol --example seal_cost -- [DEVICES] [RUNS]
//!
//! Only measures; never judges a figure.
#![allow(clippy::unwrap_used)] // a benchmark: a failed unwrap is a failed run

use std::time::Instant;

use drover_protocol::auth::sign_desired;
use drover_protocol::keys::{DeviceKeys, SealPublicKey};
use drover_protocol::sealed::rand_core::{CryptoRng, RngCore};
use drover_protocol::sealed::seal_desired;
use drover_protocol::types::{ContainerSpec, EnvVar, Resources, WorkloadSpec};
use drover_protocol::{DesiredState, ImageRef, Name};
use ed25519_dalek::SigningKey;

/// The operating system's generator, as the hub uses it.
struct OsRng;

impl RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::getrandom(dest).unwrap();
    }
}

impl CryptoRng for OsRng {}

fn state(i: usize) -> DesiredState {
    let image =
        "hub:sensor@sha256:4a5c0e7b8f2d1c3e9a6b5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a";
    let mut c = ContainerSpec::new(Name::new("main").unwrap(), ImageRef::new(image).unwrap());
    c.env = vec![
        EnvVar {
            name: "MQTT_URL".into(),
            value: "mqtt://hub.local:1883".into(),
        },
        EnvVar {
            name: "API_TOKEN".into(),
            value: format!("token-{i:08}-0123456789abcdef"),
        },
        EnvVar {
            name: "INTERVAL".into(),
            value: "10s".into(),
        },
    ];
    c.resources = Resources {
        memory_bytes: Some(64 << 20),
        cpu_millis: Some(250),
        pids: Some(64),
    };
    DesiredState {
        device: Name::new(format!("pi-{i:05}")).unwrap(),
        generation: 7,
        workloads: vec![WorkloadSpec::new(Name::new("sensor").unwrap(), vec![c])],
    }
}

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    serde_json::json!({"median": v[v.len() / 2], "min": v[0], "max": v[v.len() - 1]})
}

fn run<F: Fn(&DesiredState, &SealPublicKey) -> usize + Sync>(
    items: &[(DesiredState, SealPublicKey)],
    threads: usize,
    f: &F,
) -> (f64, usize) {
    let t = Instant::now();
    let chunk = items.len().div_ceil(threads);
    let bytes: usize = std::thread::scope(|s| {
        let w: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|(d, k)| f(d, k)).sum::<usize>()))
            .collect();
        w.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (t.elapsed().as_secs_f64() * 1000.0, bytes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    let runs: usize = args.next().map_or(5, |a| a.parse().unwrap());
    let key = SigningKey::from_bytes(&[7; 32]);
    let t = Instant::now();
    let items: Vec<(DesiredState, SealPublicKey)> = (0..n)
        .map(|i| {
            let keys = DeviceKeys::from_credential(format!("credential-{i}").as_bytes());
            (state(i), keys.seal_public)
        })
        .collect();
    let derive_ms = t.elapsed().as_secs_f64() * 1000.0;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let sign = |d: &DesiredState, _: &SealPublicKey| sign_desired(d, &key).unwrap().len();
    let seal =
        |d: &DesiredState, k: &SealPublicKey| seal_desired(d, k, &key, &mut OsRng).unwrap().len();
    let mut out = serde_json::Map::new();
    for (name, threads) in [("one_thread", 1), ("all_cores", cores)] {
        let (mut a, mut b) = (vec![], vec![]);
        let (mut sa, mut sb) = (0, 0);
        for _ in 0..runs {
            let (ms, bytes) = run(&items, threads, &sign);
            a.push(ms);
            sa = bytes;
            let (ms, bytes) = run(&items, threads, &seal);
            b.push(ms);
            sb = bytes;
        }
        out.insert(
            name.into(),
            serde_json::json!({
                "threads": threads,
                "signed_ms": stats(a),
                "sealed_and_signed_ms": stats(b),
                "signed_bytes_per_state": sa / n,
                "sealed_bytes_per_state": sb / n,
            }),
        );
    }
    out.insert("devices".into(), n.into());
    out.insert("runs".into(), runs.into());
    out.insert("derive_device_keys_ms".into(), derive_ms.into());
    println!("{}", serde_json::Value::Object(out));
}
