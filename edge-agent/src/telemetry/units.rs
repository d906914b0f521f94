//! Raw readings (bytes, nanoseconds, percent, millidegrees, sysfs text) turned into the
//! wire units of [`drover_protocol::Telemetry`] (KiB, milliseconds, thousandths, tenths
//! of a degree). Pure: the readers in `device` and `cgroup` do the IO; nothing here may
//! panic on a strange value (NaN, negative, too large): it saturates or gives `None`.

use drover_protocol::{ContainerUsage, DeviceUsage, Name};

/// What the device reader saw, in the units the kernel and sysinfo give.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawDevice {
    /// Busy share of all cores since the previous reading, percent (0..=100).
    pub cpu_percent: f32,
    pub load1: f64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_free_bytes: u64,
    /// Text of a `thermal_zone*/temp` file: millidegrees Celsius.
    pub thermal: Option<String>,
    /// Text of the Raspberry Pi firmware's `get_throttled` file (hexadecimal).
    pub throttled: Option<String>,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub uptime_s: u64,
    pub agent_rss_bytes: u64,
}

/// What one container's cgroup said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCgroup {
    /// CPU time, nanoseconds (`cpuacct.usage`, or `cpu.stat` `usage_usec` × 1000).
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// `None` where the kernel keeps no peak (cgroup v2 before Linux 5.19).
    pub memory_peak_bytes: Option<u64>,
    pub pids: u64,
    pub oom_kills: u64,
}

pub fn device_usage(raw: &RawDevice) -> DeviceUsage {
    DeviceUsage {
        cpu_permille: cpu_permille(raw.cpu_percent),
        load1_centi: load_centi(raw.load1),
        memory_used_kib: kib(raw.memory_used_bytes),
        memory_available_kib: kib(raw.memory_available_bytes),
        disk_free_kib: kib(raw.disk_free_bytes),
        temperature_decicelsius: raw.thermal.as_deref().and_then(decicelsius),
        throttled: raw.throttled.as_deref().and_then(parse_throttled),
        net_rx_bytes: raw.net_rx_bytes,
        net_tx_bytes: raw.net_tx_bytes,
        uptime_s: raw.uptime_s,
        agent_rss_kib: kib(raw.agent_rss_bytes),
    }
}

pub fn container_usage(name: Name, raw: &RawCgroup, restarts: u32) -> ContainerUsage {
    ContainerUsage {
        name,
        cpu_ms: raw.cpu_ns / 1_000_000,
        memory_kib: kib(raw.memory_bytes),
        memory_peak_kib: raw.memory_peak_bytes.map_or(0, kib),
        pids: saturate_u32(raw.pids),
        oom_kills: saturate_u32(raw.oom_kills),
        restarts,
    }
}

/// Bytes to KiB, rounded down.
pub fn kib(bytes: u64) -> u64 {
    bytes / 1024
}

/// Percent (0..=100) to thousandths, rounded; NaN and out-of-range values clamp.
pub fn cpu_permille(percent: f32) -> u16 {
    if !percent.is_finite() {
        return 0;
    }
    (percent * 10.0).round().clamp(0.0, 1000.0) as u16
}

/// A load average × 100, rounded; NaN or negative gives 0.
pub fn load_centi(load: f64) -> u32 {
    if !load.is_finite() {
        return 0;
    }
    (load * 100.0).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// A thermal zone's `temp` text (millidegrees Celsius) to tenths of a degree, rounded.
pub fn decicelsius(text: &str) -> Option<i16> {
    let milli: i64 = text.trim().parse().ok()?;
    let deci = (milli as f64 / 100.0).round();
    Some(deci.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16)
}

/// The firmware's `get_throttled` text: hexadecimal bits, with or without `0x`.
pub fn parse_throttled(text: &str) -> Option<u32> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(hex, 16).ok()
}

fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_readings_become_wire_units() {
        let raw = RawDevice {
            cpu_percent: 12.34,
            load1: 0.876,
            memory_used_bytes: 300 << 20,
            memory_available_bytes: (700 << 20) + 1023,
            disk_free_bytes: 5 << 30,
            thermal: Some("48312\n".into()),
            throttled: Some("50005\n".into()),
            net_rx_bytes: 123_456,
            net_tx_bytes: 7,
            uptime_s: 3600,
            agent_rss_bytes: 6 << 20,
        };
        let d = device_usage(&raw);
        assert_eq!(d.cpu_permille, 123);
        assert_eq!(d.load1_centi, 88);
        assert_eq!(d.memory_used_kib, 300 * 1024);
        assert_eq!(d.memory_available_kib, 700 * 1024, "rounded down");
        assert_eq!(d.disk_free_kib, 5 << 20);
        assert_eq!(d.temperature_decicelsius, Some(483));
        assert_eq!(d.throttled, Some(0x50005));
        assert_eq!((d.net_rx_bytes, d.net_tx_bytes), (123_456, 7));
        assert_eq!((d.uptime_s, d.agent_rss_kib), (3600, 6 * 1024));
        let bare = device_usage(&RawDevice::default());
        assert_eq!((bare.temperature_decicelsius, bare.throttled), (None, None));
    }

    #[test]
    fn strange_values_saturate_instead_of_panicking() {
        assert_eq!(cpu_permille(f32::NAN), 0);
        assert_eq!(cpu_permille(-3.0), 0);
        assert_eq!(cpu_permille(100.04), 1000);
        assert_eq!(cpu_permille(250.0), 1000);
        assert_eq!(load_centi(f64::INFINITY), 0);
        assert_eq!(load_centi(-1.0), 0);
        assert_eq!(load_centi(1e12), u32::MAX);
        assert_eq!(decicelsius("-12345"), Some(-123));
        assert_eq!(decicelsius("99999999"), Some(i16::MAX));
        assert_eq!(decicelsius("hot"), None);
        assert_eq!(parse_throttled("0x80008"), Some(0x80008));
        assert_eq!(parse_throttled("0"), Some(0));
        assert_eq!(parse_throttled("zz"), None);
    }

    #[test]
    fn cgroup_readings_become_wire_units() {
        let raw = RawCgroup {
            cpu_ns: 2_500_999_999,
            memory_bytes: (64 << 20) + 100,
            memory_peak_bytes: Some(80 << 20),
            pids: 3,
            oom_kills: 1 << 40,
        };
        let c = container_usage(Name::new("main").unwrap(), &raw, 2);
        assert_eq!(c.name.as_str(), "main");
        assert_eq!(c.cpu_ms, 2500);
        assert_eq!((c.memory_kib, c.memory_peak_kib), (64 * 1024, 80 * 1024));
        assert_eq!((c.pids, c.oom_kills, c.restarts), (3, u32::MAX, 2));
        let no_peak = RawCgroup {
            memory_peak_bytes: None,
            ..raw
        };
        let c = container_usage(Name::new("main").unwrap(), &no_peak, 0);
        assert_eq!(c.memory_peak_kib, 0);
    }
}
