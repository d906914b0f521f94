//! Where desired workloads come from and how the sources combine: the hub's signed
//! desired state and the manifests folder (static workloads, like kubelet's static pods).
//! The hub wins a name clash; the hidden static workload is reported, never run.

use drover_protocol::{DesiredState, WorkloadSpec};

/// The workloads to reconcile and the warnings about static ones the hub hid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    /// The hub's workloads in its order, then the static ones it does not define.
    pub workloads: Vec<WorkloadSpec>,
    /// One sentence per static workload hidden by a hub workload of the same name.
    pub conflicts: Vec<String>,
}

/// Keeps `running` workloads (the specs of created workloads not being removed) that the
/// desired list does not name. For a device that has a hub but no verified state from it
/// (first start after an SD card was re-flashed or corrupted, a key rotation, an older
/// codec): what the hub placed keeps running, volumes included, until the hub says
/// otherwise. Returns the names kept.
pub fn hold_running<'a>(
    workloads: &mut Vec<WorkloadSpec>,
    running: impl IntoIterator<Item = &'a WorkloadSpec>,
) -> Vec<String> {
    let mut kept = Vec::new();
    for spec in running {
        if !workloads.iter().any(|w| w.name == spec.name) {
            kept.push(spec.name.to_string());
            workloads.push(spec.clone());
        }
    }
    kept
}

/// Combines the hub's desired state (if any) with the static workloads.
pub fn merge(hub: Option<&DesiredState>, static_workloads: &[WorkloadSpec]) -> Merged {
    let mut workloads: Vec<WorkloadSpec> = hub.map(|d| d.workloads.clone()).unwrap_or_default();
    let hub_count = workloads.len();
    let mut conflicts = Vec::new();
    for w in static_workloads {
        if workloads[..hub_count].iter().any(|h| h.name == w.name) {
            conflicts.push(format!(
                "workload `{}` is defined by the hub and in the manifests folder: the hub's is used",
                w.name
            ));
        } else {
            workloads.push(w.clone());
        }
    }
    Merged {
        workloads,
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use drover_protocol::{Name, NetworkMode, RestartPolicy};

    use super::*;

    fn wl(name: &str, grace: u32) -> WorkloadSpec {
        WorkloadSpec {
            name: Name::new(name).unwrap(),
            containers: vec![],
            restart_policy: RestartPolicy::Always,
            network: NetworkMode::Host,
            volumes: vec![],
            stop_grace_ms: grace,
            labels: Default::default(),
            depends_on: vec![],
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        }
    }

    fn hub(workloads: Vec<WorkloadSpec>) -> DesiredState {
        DesiredState {
            device: Name::new("pi").unwrap(),
            generation: 4,
            workloads,
        }
    }

    #[test]
    fn without_a_hub_the_static_workloads_are_all_there_is() {
        let m = merge(None, &[wl("a", 1), wl("b", 1)]);
        assert_eq!(m.workloads, vec![wl("a", 1), wl("b", 1)]);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn the_hub_wins_a_name_clash_and_the_hidden_static_workload_is_reported() {
        let h = hub(vec![wl("web", 5), wl("db", 5)]);
        let m = merge(Some(&h), &[wl("web", 1), wl("logger", 1)]);
        assert_eq!(
            m.workloads,
            vec![wl("web", 5), wl("db", 5), wl("logger", 1)]
        );
        assert_eq!(m.conflicts.len(), 1);
        assert!(m.conflicts[0].contains("`web`"), "{:?}", m.conflicts);
    }

    #[test]
    fn without_a_verified_hub_state_what_runs_is_kept_as_it_is() {
        let mut desired = merge(None, &[wl("local", 1)]).workloads;
        let running = [wl("local", 9), wl("from-hub", 30)];
        let kept = hold_running(&mut desired, &running);
        assert_eq!(kept, vec!["from-hub".to_owned()]);
        assert_eq!(desired, vec![wl("local", 1), wl("from-hub", 30)]);
    }

    #[test]
    fn static_workloads_never_clash_with_each_other_here() {
        // Duplicates inside the folder are refused when it is read; merge keeps both.
        let m = merge(Some(&hub(vec![])), &[wl("a", 1), wl("a", 2)]);
        assert_eq!(m.workloads.len(), 2);
        assert!(m.conflicts.is_empty());
    }
}
