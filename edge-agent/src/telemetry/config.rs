//! The `[telemetry]` section of the agent config: how often a usage sample is taken and
//! how many wait while the broker is unreachable.
//!
//! Values are checked while deserializing, so that toml points at the offending line.
//! This module must never act on the config.

use drover_protocol::quantity::DurationMs;
use serde::{Deserialize, Deserializer, Serialize};

/// Most samples the offline queue can hold (its storage is fixed-size).
pub const MAX_TELEMETRY_QUEUE: u32 = 256;

/// Shortest interval accepted besides 0 (off): a sample costs a few dozen file reads.
const MIN_INTERVAL_MS: u64 = 1_000;

/// Longest interval accepted: 1 h. The hub keeps one history point per minute and
/// computes rates and "last sample" ages expecting samples within minutes; a longer
/// interval is almost surely a typo (`100000h`), and `0s` is the way to turn it off.
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// Telemetry settings. See `configs/agent.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Time between two samples; 0 turns telemetry off. Only with a `[hub]`.
    #[serde(deserialize_with = "de_interval")]
    pub interval: DurationMs,
    /// Samples kept while offline; beyond it older samples are thinned to one per
    /// minute, and only then the oldest dropped (counted).
    #[serde(deserialize_with = "de_queue")]
    pub queue: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            interval: DurationMs(10_000),
            // 10 minutes and 40 seconds at full resolution with the default interval.
            queue: 64,
        }
    }
}

impl TelemetryConfig {
    /// False when `interval` is 0.
    pub fn enabled(&self) -> bool {
        self.interval.0 > 0
    }
}

fn de_interval<'de, D: Deserializer<'de>>(d: D) -> Result<DurationMs, D::Error> {
    let v = DurationMs::deserialize(d)?;
    if v.0 != 0 && !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&v.0) {
        return Err(serde::de::Error::custom(format!(
            "telemetry.interval: expected 0 (off) or 1s to 1h, got {v}"
        )));
    }
    Ok(v)
}

fn de_queue<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 || v > MAX_TELEMETRY_QUEUE {
        return Err(serde::de::Error::custom(format!(
            "telemetry.queue: expected 1..={MAX_TELEMETRY_QUEUE}, got {v}"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelemetryConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values_are_read() {
        assert_eq!(parse("").unwrap(), TelemetryConfig::default());
        assert!(TelemetryConfig::default().enabled());
        let c = parse("interval = \"1m\"\nqueue = 256").unwrap();
        assert_eq!((c.interval, c.queue), (DurationMs(60_000), 256));
        let off = parse("interval = \"0s\"").unwrap();
        assert!(!off.enabled());
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let e = parse("interval = \"500ms\"").unwrap_err();
        assert!(
            e.contains("telemetry.interval: expected 0 (off) or 1s to 1h, got 500ms"),
            "{e}"
        );
        let e = parse("interval = \"100000h\"").unwrap_err();
        assert!(e.contains("1s to 1h, got 100000h"), "{e}");
        assert_eq!(
            parse("interval = \"1h\"").unwrap().interval,
            DurationMs(3_600_000)
        );
        let e = parse("queue = 0").unwrap_err();
        assert!(
            e.contains("telemetry.queue: expected 1..=256, got 0"),
            "{e}"
        );
        let e = parse("queue = 257").unwrap_err();
        assert!(e.contains("got 257"), "{e}");
        let e = parse("every = \"1s\"").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
