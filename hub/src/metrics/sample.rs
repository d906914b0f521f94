//! A populated fleet for `/metrics` tests and the scrape benchmark
//! (`examples/metrics_scrape.rs`): a real store with `n` devices, a RollingUpdate
//! Deployment placed on all of them with a rollout in progress, authenticated statuses
//! folded by the real controller, and two telemetry samples per device in a real cache.
//!
//! Every family `/metrics` exports has samples in it. Never used by the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use drover_protocol::auth::seal_status;
use drover_protocol::health::Health;
use drover_protocol::{
    ContainerStatus, ContainerUsage, DeviceStatus, DeviceUsage, Name, Phase, Telemetry,
    WorkloadStatus, WorkloadUsage, topics,
};

use crate::controller::{Controller, ControllerError, ReadSide, Settings};
use crate::store::Store;
use crate::telemetry::{Mirrors, TelemetryCache};
use crate::views::FileText;

/// The fleet and what reads it.
pub struct SampleFleet {
    pub controller: Controller,
    pub read: Mutex<ReadSide>,
    pub telemetry: TelemetryCache,
    /// Mirrors turned off (their drop counter stays 0).
    pub mirrors: Mirrors,
    /// Device names, in order (`dev-00000`, …).
    pub devices: Vec<String>,
    /// When the statuses and samples arrived.
    pub now_ms: u64,
}

/// `n` devices named `dev-00000`…; every 10th never reported (offline), every 7th lags a
/// generation; the Deployment `web` has `containers` containers (`c0`, `c1`, …).
pub fn build(dir: &Path, n: usize, containers: usize) -> Result<SampleFleet, ControllerError> {
    let db = dir.join("fleet.db");
    let settings = Settings {
        offline_after_ms: 90_000,
        device_broker: "127.0.0.1:1883".to_owned(),
        embedded_broker: false,
        device_ca: None,
        policy: Default::default(),
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut c = Controller::new(
        Store::open(&db)?,
        key,
        "hub".to_owned(),
        settings.clone(),
        tx,
    )?;
    let now_ms = crate::now_ms();
    let mut csv = String::from("name,labels\n");
    for i in 0..n {
        csv.push_str(&format!("dev-{i:05},role=sensor\n"));
    }
    let file = |name: &str, text: String| FileText {
        file: name.to_owned(),
        text,
    };
    let added = c.import_devices(&file("devices.csv", csv), now_ms)?;
    c.apply(
        &[file("web.yaml", deployment(containers, "1.0"))],
        false,
        now_ms,
    )?;
    c.apply(
        &[file("web.yaml", deployment(containers, "1.1"))],
        false,
        now_ms,
    )?;
    let read = ReadSide::new(Store::open_read(&db)?, settings, c.warnings(), c.metrics());
    let generations: BTreeMap<String, u64> = read
        .store()
        .all_desired()?
        .into_iter()
        .map(|(d, r)| (d, r.generation))
        .collect();
    let telemetry = TelemetryCache::default();
    let mut batch = Vec::new();
    for (i, d) in added.iter().enumerate() {
        telemetry.accept(&d.name, sample(i, containers, 1), now_ms - 10_000);
        telemetry.accept(&d.name, sample(i, containers, 2), now_ms);
        if i % 10 == 9 {
            continue;
        }
        let generation = generations.get(&d.name).copied().unwrap_or(0);
        let observed = if i % 7 == 6 {
            generation - 1
        } else {
            generation
        };
        let st = status(&d.name, observed, i, containers);
        let sealed = seal_status(&st, d.credential.as_bytes())?;
        batch.push((topics::status(&st.device), sealed, now_ms));
        if batch.len() == crate::controller::MAX_BATCH {
            c.ingest_batch(&std::mem::take(&mut batch), now_ms);
        }
    }
    c.ingest_batch(&batch, now_ms);
    Ok(SampleFleet {
        controller: c,
        read: Mutex::new(read),
        telemetry,
        mirrors: Mirrors::disabled(),
        devices: added.into_iter().map(|d| d.name).collect(),
        now_ms,
    })
}

fn deployment(containers: usize, tag: &str) -> String {
    let mut text = String::from(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector:\n    matchLabels: {role: sensor}\n  strategy:\n    type: RollingUpdate\n    canary: 1\n    healthTimeout: 5m\n  template:\n    spec:\n      containers:\n",
    );
    for k in 0..containers {
        text.push_str(&format!(
            "        - name: c{k}\n          image: registry.example/web:{tag}\n"
        ));
    }
    text
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|e| unreachable!("fixed sample names are valid: {e}"))
}

fn status(device: &str, observed: u64, i: usize, containers: usize) -> DeviceStatus {
    let cs: Vec<ContainerStatus> = (0..containers)
        .map(|k| {
            let mut c =
                ContainerStatus::new(name(&format!("c{k}")), "web".to_owned(), Phase::Running);
            c.restarts = (i % 3) as u32;
            c.ready = i % 5 != 4;
            c.health = if i % 5 == 4 {
                Health::Unhealthy
            } else {
                Health::Healthy
            };
            c
        })
        .collect();
    DeviceStatus {
        device: name(device),
        observed_generation: observed,
        time_ms: 0,
        workloads: vec![WorkloadStatus {
            name: name("web"),
            phase: Phase::Running,
            restarts: cs.iter().map(|c| c.restarts).sum(),
            containers: cs,
            last_error: None,
            reason: None,
            revision: 1,
            rolled_back: None,
        }],
        capacity: Default::default(),
    }
}

/// The `seq`-th sample of device `i`: every value distinct enough to spot in a body.
fn sample(i: usize, containers: usize, seq: u64) -> Telemetry {
    let i64 = i as u64;
    Telemetry {
        seq,
        time_s: 1_700_000_000 + seq * 10,
        device: DeviceUsage {
            cpu_permille: (i % 1000) as u16,
            load1_centi: 25,
            memory_used_kib: 100_000 + i64,
            memory_available_kib: 300_000,
            disk_free_kib: 2_000_000,
            temperature_decicelsius: Some(455),
            throttled: Some(if i.is_multiple_of(4) { 0x5_0005 } else { 0 }),
            net_rx_bytes: 1_000_000 * seq,
            net_tx_bytes: 500_000 * seq,
            uptime_s: 3600 + seq * 10,
            agent_rss_kib: 6_000,
        },
        workloads: vec![WorkloadUsage {
            name: name("web"),
            containers: (0..containers)
                .map(|k| ContainerUsage {
                    name: name(&format!("c{k}")),
                    cpu_ms: 1_500 * seq + k as u64,
                    memory_kib: 20_000 + i64,
                    memory_peak_kib: 30_000,
                    pids: 3,
                    oom_kills: (i % 2) as u32,
                    restarts: (i % 3) as u32,
                })
                .collect(),
        }],
        dropped: 0,
    }
}
