//! Telemetry of a simulated device (issue 12): a sealed `Telemetry` sample every interval
//! set by the coordinator (`telemetry {interval_ms}`, 0 = off), QoS 0 on the device's
//! telemetry topic as drover-agent sends it, at a phase of `index / n` of the interval so
//! that a fleet's samples are spread evenly. Samples carry `--telemetry-workloads`
//! workloads of one container each, with values that change from sample to sample.
//! Counts what it queued; it never judges anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drover_protocol::telemetry::{ContainerUsage, DeviceUsage, WorkloadUsage, seal_telemetry};
use drover_protocol::{Name, Telemetry};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the telemetry tasks of all devices share.
pub struct TelemetryShared {
    pub interval_ms: watch::Receiver<u64>,
    pub workloads: usize,
    /// Samples handed to the MQTT clients, and ones that could not be queued.
    pub sent: AtomicU64,
    pub not_queued: AtomicU64,
}

/// The sample number `seq` of a device with `workloads` workloads.
pub fn sample(seq: u64, workloads: usize, now_s: u64) -> Telemetry {
    Telemetry {
        seq,
        time_s: now_s,
        device: DeviceUsage {
            cpu_permille: (seq % 1000) as u16,
            load1_centi: 30 + (seq % 50) as u32,
            memory_used_kib: 1_310_720 + seq % 4096,
            memory_available_kib: 2_621_440,
            disk_free_kib: 24_117_248,
            temperature_decicelsius: Some(450 + (seq % 100) as i16),
            throttled: Some(0),
            net_rx_bytes: 12_884_901_888 + seq * 1500,
            net_tx_bytes: 3_221_225_472 + seq * 900,
            uptime_s: 2_592_000 + seq * 10,
            agent_rss_kib: 7_400,
        },
        workloads: (0..workloads)
            .map(|i| WorkloadUsage {
                name: Name::new(format!("sensor-{i}")).unwrap_or_else(|_| unreachable!()),
                containers: vec![ContainerUsage {
                    name: Name::new("app").unwrap_or_else(|_| unreachable!()),
                    cpu_ms: 181_440_000 + seq * 250,
                    memory_kib: 12_288 + seq % 1024,
                    memory_peak_kib: 20_480,
                    pids: 9,
                    oom_kills: 0,
                    restarts: 2,
                }],
            })
            .collect(),
        dropped: 0,
    }
}

/// Sends samples while an interval is set and the device is connected (`connected()`).
pub async fn run(
    index: usize,
    n: usize,
    name: Name,
    credential: String,
    client: AsyncClient,
    connected: impl Fn() -> bool,
    shared: std::sync::Arc<TelemetryShared>,
) {
    let topic = drover_protocol::topics::telemetry(&name);
    let mut interval = shared.interval_ms.clone();
    // A restart epoch, as the agent keeps one: seqs stay above those of an earlier run.
    let mut seq = crate::now_ms() << 10;
    loop {
        let ms = *interval.borrow_and_update();
        if ms == 0 {
            if interval.changed().await.is_err() {
                return;
            }
            continue;
        }
        let period = Duration::from_millis(ms);
        let mut next = Instant::now() + period.mul_f64(index as f64 / n.max(1) as f64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    next += period;
                    if !connected() {
                        continue;
                    }
                    seq += 1;
                    let s = sample(seq, shared.workloads, crate::now_ms() / 1000);
                    let Ok(payload) = seal_telemetry(&s, &name, credential.as_bytes()) else { continue };
                    let c = match client.try_publish(topic.clone(), QoS::AtMostOnce, false, payload) {
                        Ok(()) => &shared.sent,
                        Err(_) => &shared.not_queued,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                changed = interval.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}
