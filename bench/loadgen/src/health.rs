//! What a simulated device reports about its workloads when `drover-loadgen fleet
//! --health` is on (bench/rollout.py): like drover-agent's status report
//! (edge-agent/src/daemon/report.rs), every workload of its desired state with the
//! `revision` it runs and its containers running. A workload that is new or changed (other
//! revision or containers) "starts" once the simulated start delay has passed: its
//! containers run from then on, ready with `health: Healthy` (a passing readiness probe) —
//! unless an image contains the `--unhealthy-image` pattern: such a container runs but its
//! readiness probe fails (`Unhealthy`, not ready), as a bad release would. A workload that
//! did not change keeps its status (no restart), as on a real agent.
//!
//! Pure: no IO, no clock (times are given). It never judges health: the hub's rollout code
//! judges these statuses exactly as it judges an agent's.

use std::time::Duration;

use drover_protocol::{ContainerStatus, Health, Phase, WorkloadSpec, WorkloadStatus};

/// How workloads behave (the `--health` options of `drover-loadgen fleet`).
pub struct HealthSim {
    /// From receiving a new revision until its containers run (and report ready).
    pub ready_after: Duration,
    /// A container whose image contains this runs but never becomes ready.
    pub unhealthy_image: Option<String>,
}

/// A workload as the device runs it: the spec it was given and the status it reports.
#[derive(Clone)]
pub struct Running {
    spec: WorkloadSpec,
    pub status: WorkloadStatus,
}

/// What runs once the workloads of a new desired state have started (at `now_ms`): an
/// unchanged workload keeps its status, a new or changed one runs its new spec.
pub fn started(
    running: &[Running],
    desired: &[WorkloadSpec],
    sim: &HealthSim,
    now_ms: u64,
) -> Vec<Running> {
    desired
        .iter()
        .map(|spec| {
            let same = running.iter().find(|r| {
                r.spec.name == spec.name
                    && r.spec.revision == spec.revision
                    && r.spec.containers == spec.containers
            });
            match same {
                Some(r) => r.clone(),
                None => Running {
                    status: workload_status(spec, sim, now_ms),
                    spec: spec.clone(),
                },
            }
        })
        .collect()
}

fn workload_status(spec: &WorkloadSpec, sim: &HealthSim, now_ms: u64) -> WorkloadStatus {
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let image = c.image.to_string();
            let bad = sim
                .unhealthy_image
                .as_deref()
                .is_some_and(|p| image.contains(p));
            let mut st = ContainerStatus::new(c.name.clone(), image, Phase::Running);
            st.pid = Some(4242);
            st.started_at_ms = Some(now_ms);
            st.ready = !bad;
            if bad {
                st.health = Health::Unhealthy;
                st.probe_failures = 3;
                st.probe_message = Some("readiness probe: HTTP 503 (simulated)".to_owned());
            } else {
                st.health = Health::Healthy;
            }
            st
        })
        .collect();
    WorkloadStatus {
        name: spec.name.clone(),
        phase: Phase::Running,
        restarts: 0,
        containers,
        last_error: None,
        reason: None,
        revision: spec.revision,
        rolled_back: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_protocol::manifest::parse_workloads;

    fn spec(image: &str, revision: u64) -> WorkloadSpec {
        let text = format!(
            "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: web}}\nspec:\n  containers:\n    - name: main\n      image: {image}\n"
        );
        let mut w = parse_workloads("t.yaml", &text).expect("valid").remove(0);
        w.revision = revision;
        w
    }

    fn sim() -> HealthSim {
        HealthSim {
            ready_after: Duration::ZERO,
            unhealthy_image: Some("sensor:bad".to_owned()),
        }
    }

    #[test]
    fn a_new_revision_runs_ready_and_an_unchanged_one_keeps_its_start() {
        let v1 = started(&[], &[spec("oci:/i/sensor:1.0", 1)], &sim(), 1_000);
        let st = &v1[0].status;
        assert!(st.is_ready());
        assert_eq!(st.revision, 1);
        assert_eq!(st.containers[0].health, Health::Healthy);
        let same = started(&v1, &[spec("oci:/i/sensor:1.0", 1)], &sim(), 5_000);
        assert_eq!(same[0].status.containers[0].started_at_ms, Some(1_000));
        let v2 = started(&v1, &[spec("oci:/i/sensor:1.0", 2)], &sim(), 5_000);
        assert_eq!(v2[0].status.revision, 2);
        assert_eq!(v2[0].status.containers[0].started_at_ms, Some(5_000));
    }

    #[test]
    fn an_unhealthy_image_runs_but_is_never_ready() {
        let bad = started(&[], &[spec("oci:/i/sensor:bad", 3)], &sim(), 1_000);
        let st = &bad[0].status;
        assert_eq!(st.phase, Phase::Running);
        assert!(!st.is_ready());
        assert_eq!(st.containers[0].health, Health::Unhealthy);
        assert!(st.containers[0].probe_message.is_some());
    }
}
