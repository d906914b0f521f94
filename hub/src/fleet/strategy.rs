//! A Deployment's `spec.strategy` and `minReadySeconds` as written, checked into a
//! [`Strategy`] for the rollout step function. No IO.
//!
//! ```yaml
//! spec:
//!   minReadySeconds: 10        # shorter than healthTimeout
//!   strategy:
//!     type: RollingUpdate      # or AllAtOnce: every device at once, no health gate,
//!                              # and none of the fields below
//!     canary: 1                # devices or "10%"; default 0
//!     batchSize: 25%           # default 25%
//!     maxUnavailable: 2        # caps batchSize
//!     healthTimeout: 2m        # default 5m
//!     failureThreshold: 1      # devices or "20%"; default 1
//!     pauseAfterCanary: false
//! ```

use drover_protocol::manifest::ManifestError;
use drover_protocol::quantity::DurationMs;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::rollout::{Count, Strategy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StrategyManifest {
    #[serde(rename = "type")]
    kind: StrategyType,
    #[serde(default)]
    canary: Option<Spanned<CountManifest>>,
    #[serde(default)]
    batch_size: Option<Spanned<CountManifest>>,
    #[serde(default)]
    max_unavailable: Option<Spanned<CountManifest>>,
    #[serde(default)]
    health_timeout: Option<Spanned<DurationMs>>,
    #[serde(default)]
    failure_threshold: Option<Spanned<CountManifest>>,
    #[serde(default)]
    pause_after_canary: Option<Spanned<bool>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum StrategyType {
    RollingUpdate,
    AllAtOnce,
}

/// `3` or `"25%"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum CountManifest {
    Devices(u32),
    Text(String),
}

/// The strategy of a Deployment: `None` = every device at once without a health gate
/// (no `strategy`, or `type: AllAtOnce`).
pub(super) fn checked_strategy(
    file: &str,
    node: Option<&Spanned<StrategyManifest>>,
    min_ready_seconds: Option<&Spanned<u32>>,
) -> Result<Option<Strategy>, ManifestError> {
    let min_ready_ms = min_ready_seconds.map_or(0, |s| u64::from(s.value) * 1000);
    let Some(node) = node else {
        return Ok(None);
    };
    let m = &node.value;
    if m.kind == StrategyType::AllAtOnce {
        refuse_unused(file, m)?;
        return Ok(None);
    }
    let dflt = Strategy::default();
    let count = |n: &Option<Spanned<CountManifest>>, field: &str, min: u32, d: Count| {
        n.as_ref()
            .map_or(Ok(d), |n| checked_count(file, n, field, min))
    };
    let health_timeout_ms = match &m.health_timeout {
        None => dflt.health_timeout_ms,
        Some(t) if t.value.0 >= 1000 => t.value.0,
        Some(t) => {
            return Err(ManifestError::at(
                file,
                t,
                "strategy.healthTimeout must be at least 1s",
            ));
        }
    };
    if let Some(m) = min_ready_seconds.filter(|_| min_ready_ms >= health_timeout_ms) {
        let msg = format!(
            "minReadySeconds ({}s) must be shorter than strategy.healthTimeout ({}): no device could become healthy in time, every one would fail",
            m.value,
            DurationMs(health_timeout_ms)
        );
        return Err(ManifestError::at(file, m, msg));
    }
    Ok(Some(Strategy {
        canary: count(&m.canary, "canary", 0, dflt.canary)?,
        batch_size: count(&m.batch_size, "batchSize", 1, dflt.batch_size)?,
        max_unavailable: m
            .max_unavailable
            .as_ref()
            .map(|n| checked_count(file, n, "maxUnavailable", 1))
            .transpose()?,
        health_timeout_ms,
        failure_threshold: count(
            &m.failure_threshold,
            "failureThreshold",
            1,
            dflt.failure_threshold,
        )?,
        pause_after_canary: m.pause_after_canary.as_ref().is_some_and(|p| p.value),
        min_ready_ms,
    }))
}

/// `type: AllAtOnce` with fields only a rolling update reads: refused at the first, rather
/// than ignored without a word.
fn refuse_unused(file: &str, m: &StrategyManifest) -> Result<(), ManifestError> {
    fn unused<T>(file: &str, node: Option<&Spanned<T>>, field: &str) -> Result<(), ManifestError> {
        let Some(node) = node else {
            return Ok(());
        };
        let msg = format!(
            "strategy.{field} has no effect with type: AllAtOnce (every device gets each revision at once, without a health gate): remove it, or use type: RollingUpdate"
        );
        Err(ManifestError::at(file, node, msg))
    }
    unused(file, m.canary.as_ref(), "canary")?;
    unused(file, m.batch_size.as_ref(), "batchSize")?;
    unused(file, m.max_unavailable.as_ref(), "maxUnavailable")?;
    unused(file, m.health_timeout.as_ref(), "healthTimeout")?;
    unused(file, m.failure_threshold.as_ref(), "failureThreshold")?;
    unused(file, m.pause_after_canary.as_ref(), "pauseAfterCanary")
}

/// A device count ≥ `min`, or a percentage `1%`–`100%`.
fn checked_count(
    file: &str,
    node: &Spanned<CountManifest>,
    field: &str,
    min: u32,
) -> Result<Count, ManifestError> {
    let bad = || {
        let msg = format!(
            "strategy.{field} must be a number of devices (at least {min}) or a percentage such as \"25%\""
        );
        ManifestError::at(file, node, msg)
    };
    match &node.value {
        CountManifest::Devices(n) if *n >= min => Ok(Count::Devices(*n)),
        CountManifest::Devices(_) => Err(bad()),
        CountManifest::Text(t) => {
            let p: u8 = t
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?;
            match p {
                0 if min == 0 => Ok(Count::Devices(0)),
                1..=100 => Ok(Count::Percent(p)),
                _ => Err(bad()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{Object, parse_objects};
    use super::*;

    fn deployment(spec_extra: &str) -> Result<Option<Strategy>, String> {
        let text = format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{}}\n{spec_extra}  template:\n    spec:\n      containers: [{{name: main, image: x}}]\n"
        );
        match parse_objects("d.yaml", &text)
            .map_err(|e| e.to_string())?
            .remove(0)
        {
            Object::Deployment(d) => Ok(d.strategy),
            Object::Device(_) | Object::Config(_) => Err("not a Deployment".into()),
        }
    }

    #[test]
    fn strategies_parse_with_defaults_counts_and_percentages() {
        assert_eq!(deployment(""), Ok(None));
        assert_eq!(deployment("  strategy: {type: AllAtOnce}\n"), Ok(None));
        let s = deployment("  minReadySeconds: 10\n  strategy:\n    type: RollingUpdate\n    canary: 1\n    batchSize: 20%\n    maxUnavailable: 3\n    healthTimeout: 2m\n    failureThreshold: 10%\n    pauseAfterCanary: true\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            s,
            Strategy {
                canary: Count::Devices(1),
                batch_size: Count::Percent(20),
                max_unavailable: Some(Count::Devices(3)),
                health_timeout_ms: 120_000,
                failure_threshold: Count::Percent(10),
                pause_after_canary: true,
                min_ready_ms: 10_000,
            }
        );
        let d = deployment("  strategy: {type: RollingUpdate}\n")
            .unwrap()
            .unwrap();
        assert_eq!(d, Strategy::default());
    }

    #[test]
    fn bad_strategies_are_refused_at_their_node() {
        let cases = [
            (
                "  strategy: {type: Recreate}\n",
                "d.yaml:6:20: unknown variant `Recreate`",
            ),
            (
                "  strategy: {type: RollingUpdate, batchSize: 0}\n",
                "d.yaml:6:46: strategy.batchSize must be a number of devices (at least 1)",
            ),
            (
                "  strategy: {type: RollingUpdate, canary: 101%}\n",
                "d.yaml:6:43: strategy.canary must be",
            ),
            (
                "  strategy: {type: RollingUpdate, failureThreshold: tenth}\n",
                "d.yaml:6:53: strategy.failureThreshold must be",
            ),
            (
                "  strategy: {type: RollingUpdate, healthTimeout: 10ms}\n",
                "d.yaml:6:50: strategy.healthTimeout must be at least 1s",
            ),
            (
                "  strategy: {type: RollingUpdate, colour: red}\n",
                "d.yaml:6:35: unknown field `colour`",
            ),
            (
                "  minReadySeconds: 120\n  strategy: {type: RollingUpdate, healthTimeout: 2m}\n",
                "d.yaml:6:20: minReadySeconds (120s) must be shorter than strategy.healthTimeout (2m): no device could become healthy in time",
            ),
            (
                "  minReadySeconds: 300\n  strategy: {type: RollingUpdate}\n",
                "d.yaml:6:20: minReadySeconds (300s) must be shorter than strategy.healthTimeout (5m)",
            ),
            (
                "  strategy: {type: AllAtOnce, canary: 1}\n",
                "d.yaml:6:39: strategy.canary has no effect with type: AllAtOnce",
            ),
            (
                "  strategy:\n    type: AllAtOnce\n    pauseAfterCanary: false\n",
                "d.yaml:8:23: strategy.pauseAfterCanary has no effect with type: AllAtOnce",
            ),
            (
                "  strategy: {type: AllAtOnce, healthTimeout: 1m}\n",
                "d.yaml:6:46: strategy.healthTimeout has no effect",
            ),
        ];
        for (extra, want) in cases {
            let e = deployment(extra).unwrap_err();
            assert!(e.starts_with(want), "{extra:?}: {e}");
        }
    }

    #[test]
    fn the_rollout_example_in_configs_parses() {
        let text = include_str!("../../../configs/fleet/rollout.yaml");
        let gateway = parse_objects("rollout.yaml", text)
            .unwrap()
            .into_iter()
            .find(|o| matches!(o, Object::Deployment(d) if d.name.as_str() == "gateway"));
        let Some(Object::Deployment(d)) = gateway else {
            panic!("the gateway Deployment");
        };
        let s = d.strategy.unwrap();
        assert_eq!(
            (s.canary, s.batch_size),
            (Count::Devices(1), Count::Devices(2))
        );
        assert_eq!(d.template.min_ready_ms, 10_000);
    }
}
