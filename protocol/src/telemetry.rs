//! Telemetry: the compact usage sample an agent sends every `telemetry.interval` on
//! `drover/v1/dev/{device}/telemetry` (MQTT QoS 0), and how it is authenticated.
//!
//! Shapes are chosen for the wire budget (≤ 96 bytes per sample with one workload):
//! integers in fixed units (KiB, milliseconds of CPU time, thousandths, tenths of a
//! degree), postcard varints, no device name in the body (the topic and the MAC bind it).
//! Counters (`cpu_ms`, `net_*_bytes`, `oom_kills`, `restarts`, `dropped`) are cumulative,
//! so a lost sample loses resolution, never a count; rates are computed by the reader.
//!
//! Payload: `envelope(Telemetry) ‖ tag`, where `tag` is the first 16 bytes of
//! HMAC-SHA256(device status key (`keys`), context ‖ device name ‖ 0 ‖ envelope) (a truncated HMAC,
//! RFC 2104 §5). `seq` rises strictly per device, across agent restarts: the hub drops a
//! sample whose `seq` is not above the last one it accepted (a replay). This module must
//! never do IO and never panic on a payload.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Name;
use crate::codec::{CodecError, Wire, decode, encode};
use crate::keys::StatusKey;

const TELEMETRY_CONTEXT: &[u8] = b"drover/v1/telemetry\0";

/// Bytes of the truncated HMAC-SHA256 tag after the envelope.
pub const TAG_BYTES: usize = 16;

/// One usage sample of a device and its containers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Strictly increasing per device, across agent restarts (replay protection).
    pub seq: u64,
    /// When the sample was taken: Unix time in seconds by the device's clock.
    pub time_s: u64,
    pub device: DeviceUsage,
    /// Workloads with at least one container that has a cgroup, in the agent's order.
    pub workloads: Vec<WorkloadUsage>,
    /// Samples the agent dropped since it started (offline queue full); cumulative.
    pub dropped: u64,
}

/// Whole-device usage. Optional fields are `None` where the board does not expose them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUsage {
    /// CPU busy over all cores since the previous sample, in thousandths (0..=1000).
    pub cpu_permille: u16,
    /// One-minute load average × 100.
    pub load1_centi: u32,
    /// Memory in use (total − available), KiB.
    pub memory_used_kib: u64,
    /// Memory available for new work (`MemAvailable`), KiB.
    pub memory_available_kib: u64,
    /// Free space on the filesystem of the agent's state folder, KiB.
    pub disk_free_kib: u64,
    /// SoC temperature in tenths of a degree Celsius (`thermal_zone0` on a Raspberry Pi).
    pub temperature_decicelsius: Option<i16>,
    /// Raspberry Pi `get_throttled` bits (under-voltage, frequency capped, throttled, soft
    /// temperature limit; now and since boot), where the firmware exposes them.
    pub throttled: Option<u32>,
    /// Bytes received and sent on all interfaces but loopback since boot; cumulative.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Seconds since the device booted.
    pub uptime_s: u64,
    /// Resident memory of the agent process itself, KiB.
    pub agent_rss_kib: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadUsage {
    pub name: Name,
    pub containers: Vec<ContainerUsage>,
}

/// One container's usage, read from its cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUsage {
    pub name: Name,
    /// CPU time used by the container's cgroup, milliseconds; cumulative (resets when the
    /// container is recreated, as cAdvisor's counters do).
    pub cpu_ms: u64,
    /// Memory charged to the cgroup now (`memory.current` / `memory.usage_in_bytes`), KiB.
    pub memory_kib: u64,
    /// Highest memory charged (`memory.peak` / `memory.max_usage_in_bytes`), KiB; 0 where
    /// the kernel does not track it.
    pub memory_peak_kib: u64,
    /// Processes and threads in the cgroup now.
    pub pids: u32,
    /// Times the kernel's OOM killer killed a process of this container; cumulative.
    pub oom_kills: u32,
    /// Restarts of the container since it was first started; cumulative.
    pub restarts: u32,
}

impl DeviceUsage {
    /// A Raspberry Pi 4 after a month up (30 days, 12 GiB received, 52.7 °C, throttled
    /// in the past): realistic magnitudes for size budgets, since varints grow with the
    /// values. Used by the wire-size tests and `bench/wire`; not a default.
    pub fn month_up_example() -> DeviceUsage {
        DeviceUsage {
            cpu_permille: 237,
            load1_centi: 152,
            memory_used_kib: 1_310_720,
            memory_available_kib: 2_621_440,
            disk_free_kib: 24_117_248,
            temperature_decicelsius: Some(527),
            throttled: Some(0x5_0000),
            net_rx_bytes: 12_884_901_888,
            net_tx_bytes: 3_221_225_472,
            uptime_s: 2_592_000,
            agent_rss_kib: 7_400,
        }
    }
}

impl Wire for Telemetry {
    const KIND: u8 = 5;
    const KIND_NAME: &'static str = "telemetry";
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("telemetry of {0} bytes is too short to carry its {TAG_BYTES}-byte tag")]
    Short(usize),
    #[error("bad MAC: not sent by the device's credential holder")]
    BadMac,
    #[error("sequence {got} is not above the {held} already accepted (replay or reorder)")]
    Replayed { got: u64, held: u64 },
}

impl TelemetryError {
    /// A short label for counters: `malformed`, `bad_mac`, `replayed`.
    pub fn reason(&self) -> &'static str {
        match self {
            TelemetryError::Codec(_) | TelemetryError::Short(_) => "malformed",
            TelemetryError::BadMac => "bad_mac",
            TelemetryError::Replayed { .. } => "replayed",
        }
    }
}

fn tag(device: &Name, key: &StatusKey, envelope: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(TELEMETRY_CONTEXT);
    m.update(device.as_str().as_bytes());
    m.update(&[0]);
    m.update(envelope);
    m
}

/// Encodes a sample of `device` and appends its tag; the result is the MQTT payload.
pub fn seal_telemetry(
    sample: &Telemetry,
    device: &Name,
    credential: &[u8],
) -> Result<Vec<u8>, CodecError> {
    seal_telemetry_keyed(sample, device, &StatusKey::derive(credential))
}

/// [`seal_telemetry`] with the status key itself (an enrolled device's agreed key).
pub fn seal_telemetry_keyed(
    sample: &Telemetry,
    device: &Name,
    key: &StatusKey,
) -> Result<Vec<u8>, CodecError> {
    let mut bytes = encode(sample)?;
    let full = tag(device, key, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&full[..TAG_BYTES]);
    Ok(bytes)
}

/// Checks a payload received on `device`'s telemetry topic: tagged with that device's
/// status key and with a `seq` above `held` (the last one accepted; 0 for none).
pub fn open_telemetry(
    payload: &[u8],
    device: &Name,
    key: &StatusKey,
    held: u64,
) -> Result<Telemetry, TelemetryError> {
    let Some(split) = payload.len().checked_sub(TAG_BYTES) else {
        return Err(TelemetryError::Short(payload.len()));
    };
    let (envelope, got) = payload.split_at(split);
    tag(device, key, envelope)
        .verify_truncated_left(got)
        .map_err(|_| TelemetryError::BadMac)?;
    let sample: Telemetry = decode(envelope)?;
    if sample.seq <= held {
        return Err(TelemetryError::Replayed {
            got: sample.seq,
            held,
        });
    }
    Ok(sample)
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
