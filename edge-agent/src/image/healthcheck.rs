//! An image's own `HEALTHCHECK`: the `Healthcheck` field of its Docker/OCI config, and the
//! probe it becomes when a container's manifest sets none (Kubernetes ignores it; Drover
//! does not).
//!
//! Docker's semantics are kept: the check only marks the container unhealthy and never
//! restarts it, so it becomes a *readiness* probe (health and `ready`, no restart), its
//! start period the probe's initial delay. Pure data and checks: nothing here runs.

use drover_protocol::{Probe, ProbeAction};
use serde::{Deserialize, Serialize};

/// Docker's defaults for a field left at 0.
pub const DEFAULT_INTERVAL_S: u32 = 30;
pub const DEFAULT_TIMEOUT_S: u32 = 30;
pub const DEFAULT_RETRIES: u32 = 3;

/// Longest command accepted (bytes, all parts together), as for a manifest's exec probe.
pub const MAX_PROBE_BYTES: usize = 4096;

const NANOS_PER_S: u64 = 1_000_000_000;
/// Docker refuses a non-zero interval or timeout below 1 ms.
const MIN_NANOS: i64 = 1_000_000;

/// `Healthcheck` as the image config holds it: durations in nanoseconds, 0 = default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageHealthcheck {
    /// `[]` (inherit: nothing here), `["NONE"]`, `["CMD", prog, args…]` or
    /// `["CMD-SHELL", "command"]`.
    pub test: Option<Vec<String>>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HealthcheckError {
    #[error("Test must start with NONE, CMD or CMD-SHELL, not {0:?}")]
    UnknownTest(String),
    #[error("Test {0} needs a command after it")]
    NoCommand(&'static str),
    #[error("Test is longer than {MAX_PROBE_BYTES} bytes")]
    TooLong,
    #[error("{field} must be 0 (default) or at least 1ms, not {nanos}ns")]
    Duration { field: &'static str, nanos: i64 },
    #[error("Retries must be 0 (default) or more, not {0}")]
    Retries(i64),
}

impl ImageHealthcheck {
    /// The readiness probe it stands for; `None` when disabled (`NONE`) or empty.
    pub fn probe(&self) -> Result<Option<Probe>, HealthcheckError> {
        let Some(action) = self.action()? else {
            return Ok(None);
        };
        let mut p = Probe::new(action);
        p.period_s = seconds("Interval", self.interval, MIN_NANOS)?.unwrap_or(DEFAULT_INTERVAL_S);
        p.timeout_s = seconds("Timeout", self.timeout, MIN_NANOS)?.unwrap_or(DEFAULT_TIMEOUT_S);
        p.initial_delay_s = seconds("StartPeriod", self.start_period, 0)?.unwrap_or(0);
        p.success_threshold = 1;
        p.failure_threshold = match self.retries.unwrap_or(0) {
            0 => DEFAULT_RETRIES,
            r if r < 0 => return Err(HealthcheckError::Retries(r)),
            r => u32::try_from(r).unwrap_or(u32::MAX),
        };
        Ok(Some(p))
    }

    fn action(&self) -> Result<Option<ProbeAction>, HealthcheckError> {
        let test = self.test.as_deref().unwrap_or_default();
        let Some((kind, rest)) = test.split_first() else {
            return Ok(None);
        };
        let command = match kind.as_str() {
            "NONE" => return Ok(None),
            "CMD" if rest.first().is_some_and(|p| !p.is_empty()) => rest.to_vec(),
            "CMD" => return Err(HealthcheckError::NoCommand("CMD")),
            // Docker appends everything after CMD-SHELL to the shell's arguments.
            "CMD-SHELL" if !rest.is_empty() => {
                let mut c = vec!["/bin/sh".to_owned(), "-c".to_owned()];
                c.extend(rest.iter().cloned());
                c
            }
            "CMD-SHELL" => return Err(HealthcheckError::NoCommand("CMD-SHELL")),
            other => return Err(HealthcheckError::UnknownTest(other.to_owned())),
        };
        if command.iter().map(String::len).sum::<usize>() > MAX_PROBE_BYTES {
            return Err(HealthcheckError::TooLong);
        }
        Ok(Some(ProbeAction::Exec { command }))
    }
}

/// Whole seconds (rounded up) of a duration in nanoseconds; `None` for 0 (the default).
fn seconds(
    field: &'static str,
    nanos: Option<i64>,
    min: i64,
) -> Result<Option<u32>, HealthcheckError> {
    match nanos.unwrap_or(0) {
        0 => Ok(None),
        n if n < min.max(1) => Err(HealthcheckError::Duration { field, nanos: n }),
        n => Ok(Some(
            u32::try_from(n.unsigned_abs().div_ceil(NANOS_PER_S)).unwrap_or(u32::MAX),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ImageHealthcheck {
        serde_json::from_str(json).expect("parses")
    }

    fn exec(p: &Probe) -> &[String] {
        match &p.action {
            ProbeAction::Exec { command } => command,
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn cmd_shell_runs_through_sh_with_docker_defaults() {
        let h = parse(r#"{"Test": ["CMD-SHELL", "wget -q -O- localhost/health || exit 1"]}"#);
        let p = h.probe().unwrap().expect("a probe");
        assert_eq!(
            exec(&p),
            ["/bin/sh", "-c", "wget -q -O- localhost/health || exit 1"]
        );
        assert_eq!((p.period_s, p.timeout_s, p.initial_delay_s), (30, 30, 0));
        assert_eq!((p.success_threshold, p.failure_threshold), (1, 3));
    }

    #[test]
    fn cmd_runs_as_given_with_its_timings_in_seconds_rounded_up() {
        let h = parse(
            r#"{"Test": ["CMD", "/bin/check", "--quick"], "Interval": 5000000000,
                "Timeout": 1500000000, "StartPeriod": 20000000000, "Retries": 5,
                "StartInterval": 1000000000}"#,
        );
        let p = h.probe().unwrap().expect("a probe");
        assert_eq!(exec(&p), ["/bin/check", "--quick"]);
        assert_eq!(
            (
                p.period_s,
                p.timeout_s,
                p.initial_delay_s,
                p.failure_threshold
            ),
            (5, 2, 20, 5)
        );
    }

    #[test]
    fn none_and_an_empty_test_mean_no_probe() {
        assert_eq!(parse(r#"{"Test": ["NONE"]}"#).probe(), Ok(None));
        assert_eq!(parse(r#"{"Test": []}"#).probe(), Ok(None));
        assert_eq!(parse(r#"{"Interval": 1000000000}"#).probe(), Ok(None));
    }

    #[test]
    fn bad_values_are_errors_that_say_what_was_expected() {
        let cases = [
            (
                r#"{"Test": ["RUN", "x"]}"#,
                "must start with NONE, CMD or CMD-SHELL",
            ),
            (r#"{"Test": ["CMD"]}"#, "CMD needs a command"),
            (r#"{"Test": ["CMD", ""]}"#, "CMD needs a command"),
            (r#"{"Test": ["CMD-SHELL"]}"#, "CMD-SHELL needs a command"),
            (
                r#"{"Test": ["CMD", "x"], "Interval": -1}"#,
                "Interval must be 0",
            ),
            (r#"{"Test": ["CMD", "x"], "Timeout": 999}"#, "at least 1ms"),
            (
                r#"{"Test": ["CMD", "x"], "StartPeriod": -5}"#,
                "StartPeriod",
            ),
            (
                r#"{"Test": ["CMD", "x"], "Retries": -1}"#,
                "Retries must be 0",
            ),
        ];
        for (json, want) in cases {
            let err = parse(json).probe().expect_err(json).to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
        let long = format!(r#"{{"Test": ["CMD-SHELL", "{}"]}}"#, "x".repeat(5000));
        assert_eq!(parse(&long).probe(), Err(HealthcheckError::TooLong));
        assert!(serde_json::from_str::<ImageHealthcheck>(r#"{"Interval": "30s"}"#).is_err());
        let huge = parse(r#"{"Test": ["CMD", "x"], "Interval": 9223372036854775807}"#);
        assert_eq!(huge.probe().unwrap().unwrap().period_s, u32::MAX, "clamped");
    }
}
