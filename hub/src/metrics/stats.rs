//! The hub's own counters in `/metrics`: exactly the counters of `get stats`
//! (`GET /v1/stats`), each mapped to one Prometheus series by [`stat_series`], so that the
//! two can never list different things. Pure: never reads anything.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{NONE, counter};

/// The paths whose drops `get stats` counts as `{kind}_rejected_{reason}`.
const REJECT_KINDS: [&str; 3] = ["status", "presence", "telemetry"];

/// `get stats` key, counter family (without `_total`), HELP.
const PLAIN: [(&str, &str, &str); 9] = [
    (
        "controller_messages",
        "drover_hub_device_messages",
        "Status and presence messages the controller received, since the hub started",
    ),
    (
        "controller_message_batches",
        "drover_hub_message_batches",
        "Batches of device messages folded, one store transaction each",
    ),
    (
        "status_accepted",
        "drover_hub_status_accepted",
        "Status snapshots accepted (kept across hub restarts)",
    ),
    (
        "telemetry_accepted",
        "drover_hub_telemetry_samples_accepted",
        "Telemetry samples accepted, since the hub started",
    ),
    (
        "telemetry_history_rows",
        "drover_hub_telemetry_history_rows",
        "Telemetry history rows written, since the hub started",
    ),
    (
        "mirror_dropped",
        "drover_hub_mirror_messages_dropped",
        "JSON mirror messages dropped (queue full, or the hub not connected to the broker), \
         since the hub started",
    ),
    (
        "controller_transactions",
        "drover_hub_store_transactions",
        "Store transactions the controller committed, since the hub started",
    ),
    (
        "desired_overwritten",
        "drover_hub_desired_overwritten",
        "Retained desired states found overwritten or deleted on the broker by someone else \
         (each published again), kept across hub restarts",
    ),
    (
        "desired_generations",
        "drover_hub_desired_generations",
        "Desired states signed and stored (kept across hub restarts)",
    ),
];

const REJECTED: &str = "drover_hub_messages_rejected";

/// `get stats` prefix of refused joins (`enroll::check::TokenRefusal`), and its family.
const JOIN_REFUSED_KEY: &str = "join_refused_";
const JOIN_REFUSED: &str = "drover_hub_join_refused";

/// The series of a `get stats` key: the full sample name (with `_total`) and its labels;
/// None for a key `/metrics` does not know (a unit test keeps that from happening).
pub fn stat_series(key: &str) -> Option<(String, Vec<(&'static str, String)>)> {
    for kind in REJECT_KINDS {
        let reason = key
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix("_rejected_"));
        if let Some(reason) = reason {
            let labels = vec![("kind", kind.to_owned()), ("reason", reason.to_owned())];
            return Some((format!("{REJECTED}_total"), labels));
        }
    }
    if let Some(reason) = key.strip_prefix(JOIN_REFUSED_KEY) {
        let labels = vec![("reason", reason.to_owned())];
        return Some((format!("{JOIN_REFUSED}_total"), labels));
    }
    let (_, name, _) = PLAIN.iter().find(|(k, _, _)| *k == key)?;
    Some((format!("{name}_total"), Vec::new()))
}

/// The counter families of `stats` (the `get stats` map, every known reason present).
pub(super) fn hub(enc: &mut DescriptorEncoder, stats: &BTreeMap<String, u64>) -> fmt::Result {
    let rejected = stats.iter().filter_map(|(key, n)| {
        REJECT_KINDS.iter().find_map(|kind| {
            let reason = key.strip_prefix(kind)?.strip_prefix("_rejected_")?;
            Some(([("kind", *kind), ("reason", reason)], *n))
        })
    });
    let help = "Device messages dropped, by path (status, presence, telemetry) and reason, \
                as `get stats` counts them";
    counter(enc, REJECTED, help, rejected)?;
    let refused = stats.iter().filter_map(|(key, n)| {
        let reason = key.strip_prefix(JOIN_REFUSED_KEY)?;
        Some(([("reason", reason)], *n))
    });
    let help = "Join requests refused, by reason (the client gets the same answer for all)";
    counter(enc, JOIN_REFUSED, help, refused)?;
    for (key, name, help) in PLAIN {
        let n = stats.get(key).copied().unwrap_or(0);
        counter(enc, name, help, [(NONE, n)])?;
    }
    Ok(())
}
