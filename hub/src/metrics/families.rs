//! The families of the fleet (devices, workloads) and the rollouts, written from facts
//! into a `prometheus-client` descriptor encoder, plus the two helpers every family goes
//! through. Pure: never reads anything.

use std::collections::BTreeMap;
use std::fmt;

use drover_protocol::Phase;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use drover_protocol::health::Health;

use super::fleet::{DeploymentFacts, FleetFacts, health_label};

/// Every phase a workload can report, so that each `drover_workloads{phase}` series
/// exists (at 0) from the first scrape.
const PHASES: [Phase; 7] = [
    Phase::Pending,
    Phase::Running,
    Phase::BackOff,
    Phase::Succeeded,
    Phase::Failed,
    Phase::Error,
    Phase::Stopping,
];
const HEALTHS: [Health; 4] = [
    Health::None,
    Health::Starting,
    Health::Healthy,
    Health::Unhealthy,
];

/// A gauge family: `# HELP`, `# TYPE`, then one sample per row.
pub(super) fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// A counter family; `name` without `_total` (the encoder appends it).
pub(super) fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, V, u64>(&v, None)?;
    }
    Ok(())
}

/// No labels.
pub(super) const NONE: [(&str, &str); 0] = [];

/// Devices, generation lag and workloads.
pub(super) fn fleet(enc: &mut DescriptorEncoder, f: &FleetFacts) -> fmt::Result {
    let devices = &f.devices;
    let online = devices.iter().filter(|d| d.online).count();
    gauge(
        enc,
        "drover_devices",
        "Registered devices",
        [(NONE, devices.len())],
    )?;
    gauge(
        enc,
        "drover_devices_online",
        "Devices online",
        [(NONE, online)],
    )?;
    let up = devices
        .iter()
        .map(|d| ([("device", d.name.as_str())], u32::from(d.online)));
    gauge(enc, "drover_device_up", "1 when the device is online", up)?;
    let lag = devices
        .iter()
        .map(|d| ([("device", d.name.as_str())], d.generation_lag));
    let help = "Desired generation minus the generation the device last reported";
    gauge(enc, "drover_device_generation_lag", help, lag)?;
    let lags = devices.iter().map(|d| d.generation_lag);
    let help = "Sum of every device's generation lag";
    gauge(
        enc,
        "drover_fleet_generation_lag",
        help,
        [(NONE, lags.sum::<u64>())],
    )?;
    let max = devices.iter().map(|d| d.generation_lag).max().unwrap_or(0);
    let help = "Largest generation lag of any device";
    gauge(enc, "drover_fleet_generation_lag_max", help, [(NONE, max)])?;
    let behind = devices.iter().filter(|d| d.generation_lag > 0).count();
    let help = "Devices that have not reported their latest desired generation";
    gauge(enc, "drover_devices_out_of_sync", help, [(NONE, behind)])?;
    workload_counts(enc, f)?;
    workloads(enc, f)
}

/// Fleet-wide workload counts by phase, by health, ready.
fn workload_counts(enc: &mut DescriptorEncoder, f: &FleetFacts) -> fmt::Result {
    let all = || f.devices.iter().flat_map(|d| d.workloads.iter());
    let mut phases: BTreeMap<&str, usize> = PHASES.iter().map(|p| (p.as_str(), 0)).collect();
    let mut healths: BTreeMap<&str, usize> =
        HEALTHS.iter().map(|h| (health_label(*h), 0)).collect();
    for w in all() {
        *phases.entry(w.phase).or_default() += 1;
        *healths.entry(w.health).or_default() += 1;
    }
    let help = "Workloads on devices by phase (Pending until the device reports it)";
    let rows = phases.into_iter().map(|(p, n)| ([("phase", p)], n));
    gauge(enc, "drover_workloads", help, rows)?;
    let help = "Workloads on devices by the worst probe verdict of their containers: None \
                (no probe), Starting, Healthy, Unhealthy, as the JSON API spells them";
    let rows = healths.into_iter().map(|(h, n)| ([("health", h)], n));
    gauge(enc, "drover_workloads_by_health", help, rows)?;
    // As Kubernetes turns a pod on an unreachable node not Ready: an offline device's
    // workloads keep their last phase but are not counted ready.
    let ready = f
        .devices
        .iter()
        .filter(|d| d.online)
        .flat_map(|d| d.workloads.iter())
        .filter(|w| w.ready)
        .count();
    let help = "Workloads running with every container ready, on online devices";
    gauge(enc, "drover_workloads_ready", help, [(NONE, ready)])
}

/// Per device and workload: ready, healthy, restarts; per container: restarts.
fn workloads(enc: &mut DescriptorEncoder, f: &FleetFacts) -> fmt::Result {
    let each = || {
        f.devices.iter().flat_map(|d| {
            d.workloads.iter().map(move |w| {
                (
                    [("device", d.name.as_str()), ("workload", w.name.as_str())],
                    w,
                    d.online,
                )
            })
        })
    };
    let help = "1 when the workload runs with every container ready and its device is online";
    let rows = each().map(|(l, w, online)| (l, u32::from(w.ready && online)));
    gauge(enc, "drover_workload_ready", help, rows)?;
    let help = "1 when the workload runs and each container's probes pass or it has none \
                (health None counts as healthy while running, as Kubernetes counts a \
                container without probes ready); 0 while any is Starting or Unhealthy, \
                or while the device is offline";
    let rows = each().map(|(l, w, online)| (l, u32::from(w.healthy && online)));
    gauge(enc, "drover_workload_healthy", help, rows)?;
    let help = "Restarts of the workload's containers, as its status reports them";
    let rows = each().map(|(l, w, _)| (l, w.restarts));
    gauge(enc, "drover_workload_restarts", help, rows)?;
    let rows = each().flat_map(|([d, w], facts, _)| {
        facts
            .containers
            .iter()
            .map(move |(c, n)| ([d, w, ("container", c.as_str())], *n))
    });
    let help = "Restarts of the container since it was first started, as the status reports \
                them (resets when the workload is replaced)";
    gauge(enc, "drover_container_restarts", help, rows)
}

/// Each Deployment's placement and its last rollout's progress.
pub(super) fn rollouts(enc: &mut DescriptorEncoder, ds: &[DeploymentFacts]) -> fmt::Result {
    let each = || ds.iter().map(|d| ([("deployment", d.name.as_str())], d));
    let rows = each().map(|(l, d)| (l, d.revision));
    gauge(
        enc,
        "drover_deployment_revision",
        "Revision of the Deployment's template",
        rows,
    )?;
    let rows = each().map(|(l, d)| (l, d.devices));
    gauge(
        enc,
        "drover_deployment_devices",
        "Devices the Deployment is placed on",
        rows,
    )?;
    let help = "Placed devices reporting the Deployment's workload ready";
    let rows = each().map(|(l, d)| (l, d.ready));
    gauge(enc, "drover_deployment_ready_devices", help, rows)?;
    let with = || each().filter_map(|(l, d)| d.rollout.as_ref().map(|r| (l, r)));
    let rows = with().map(|(l, r)| (l, r.to));
    gauge(
        enc,
        "drover_rollout_revision",
        "Revision the last rollout moves devices to",
        rows,
    )?;
    let help = "Devices the last rollout gave its revision";
    gauge(
        enc,
        "drover_rollout_updated_devices",
        help,
        with().map(|(l, r)| (l, r.updated)),
    )?;
    let help = "Updated devices judged healthy on the new revision";
    gauge(
        enc,
        "drover_rollout_healthy_devices",
        help,
        with().map(|(l, r)| (l, r.healthy)),
    )?;
    let help = "Updated devices that failed on the new revision";
    gauge(
        enc,
        "drover_rollout_failed_devices",
        help,
        with().map(|(l, r)| (l, r.failed)),
    )?;
    let flag = |b: bool| u32::from(b);
    let help = "1 while the last rollout is progressing or paused";
    let rows = with().map(|(l, r)| (l, flag(r.active)));
    gauge(enc, "drover_rollout_active", help, rows)?;
    let help = "1 while the last rollout waits for `rollout resume`";
    gauge(
        enc,
        "drover_rollout_paused",
        help,
        with().map(|(l, r)| (l, flag(r.paused))),
    )?;
    let help = "1 when the last rollout was rolled back";
    let rows = with().map(|(l, r)| (l, flag(r.rolled_back)));
    gauge(enc, "drover_rollout_rolled_back", help, rows)
}
