//! Unit tests of the planner: each rule of the reconciler, on hand-made snapshots.

use drover_protocol::*;

use super::*;
use crate::reconcile::backoff::{CAP_MS, RESET_AFTER_MS};

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn img(s: &str) -> ImageRef {
    ImageRef::new(s).expect("valid image")
}

fn container(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec::new(n(name), img(image))
}

fn workload(name: &str, images: &[&str], policy: RestartPolicy) -> WorkloadSpec {
    WorkloadSpec {
        name: n(name),
        containers: images
            .iter()
            .enumerate()
            .map(|(i, img)| container(&format!("c{i}"), img))
            .collect(),
        restart_policy: policy,
        network: NetworkMode::Host,
        volumes: vec![],
        stop_grace_ms: 3000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    }
}

fn observed_with(spec: &WorkloadSpec, run: RunState, restarts: u32, level: u32) -> Observed {
    let containers = spec
        .containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                ObservedContainer {
                    run: run.clone(),
                    restarts,
                    backoff_level: level,
                    probes: Default::default(),
                    restart_requested: false,
                    ready: matches!(run, RunState::Running { .. }),
                },
            )
        })
        .collect();
    let mut o = Observed::default();
    o.workloads.insert(
        spec.name.clone(),
        ObservedWorkload {
            spec: spec.clone(),
            containers,
            stopping_since: None,
        },
    );
    o
}

fn ready(o: &mut Observed, images: &[&str]) {
    for i in images {
        o.images.insert((*i).to_string(), ImageState::Ready);
    }
}

fn exited(code: i32, oom: bool, started: u64, finished: u64) -> RunState {
    RunState::Exited {
        code,
        oom_killed: oom,
        killed_by_probe: false,
        started_at_ms: started,
        finished_at_ms: finished,
        ran_ms: finished - started,
        finished_at_boot_ms: finished,
    }
}

fn start_of(p: &Plan) -> Vec<(bool, u32)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartContainer {
                restart,
                backoff_level,
                ..
            } => Some((*restart, *backoff_level)),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_desired_nothing_running_does_nothing() {
    assert_eq!(plan(&[], &Observed::default(), 0), Plan::default());
}

#[test]
fn a_new_workload_waits_for_its_images() {
    let w = workload(
        "web",
        &["oci:/a", "oci:/b", "oci:/a"],
        RestartPolicy::Always,
    );
    let p = plan(std::slice::from_ref(&w), &Observed::default(), 0);
    assert_eq!(
        p.actions,
        vec![
            Action::PrepareImage {
                image: "oci:/a".into()
            },
            Action::PrepareImage {
                image: "oci:/b".into()
            }
        ],
        "each image asked for once, nothing created yet"
    );
}

#[test]
fn a_new_workload_with_images_is_created_and_each_container_started() {
    let w = workload("web", &["oci:/a", "oci:/b"], RestartPolicy::Always);
    let mut o = Observed::default();
    ready(&mut o, &["oci:/a", "oci:/b"]);
    let p = plan(std::slice::from_ref(&w), &o, 0);
    assert_eq!(p.actions[0], Action::CreateWorkload { workload: n("web") });
    assert_eq!(start_of(&p), vec![(false, 0), (false, 0)]);
}

#[test]
fn a_running_unchanged_workload_is_not_touched() {
    let w = workload("web", &["oci:/a"], RestartPolicy::Always);
    let o = observed_with(
        &w,
        RunState::Running {
            pid: 42,
            started_at_ms: 1,
        },
        3,
        2,
    );
    assert_eq!(plan(&[w], &o, 10_000), Plan::default());
}

#[test]
fn a_workload_no_longer_desired_is_removed_with_its_data() {
    let w = workload("old", &["oci:/a"], RestartPolicy::Always);
    let o = observed_with(
        &w,
        RunState::Running {
            pid: 42,
            started_at_ms: 1,
        },
        0,
        0,
    );
    let p = plan(&[], &o, 5);
    assert_eq!(p.actions, vec![Action::StopWorkload { workload: n("old") }]);
}

#[test]
fn a_changed_workload_is_replaced_once_its_new_images_are_ready() {
    let old = workload("web", &["oci:/a"], RestartPolicy::Always);
    let mut new = old.clone();
    new.containers[0].image = img("oci:/b");
    new.stop_grace_ms = 1;
    let mut o = observed_with(
        &old,
        RunState::Running {
            pid: 42,
            started_at_ms: 1,
        },
        0,
        0,
    );

    let p = plan(std::slice::from_ref(&new), &o, 5);
    assert_eq!(
        p.actions,
        vec![Action::PrepareImage {
            image: "oci:/b".into()
        }],
        "old keeps running meanwhile"
    );

    ready(&mut o, &["oci:/b"]);
    let p = plan(std::slice::from_ref(&new), &o, 5);
    assert_eq!(
        p.actions,
        vec![Action::StopWorkload { workload: n("web") }],
        "the old one is asked to stop first"
    );

    // Stopping, still running: nothing until its grace period (the old one's) ends.
    let w = o.workloads.get_mut(&n("web")).unwrap();
    w.stopping_since = Some(10);
    let p = plan(std::slice::from_ref(&new), &o, 20);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.wake_at_ms, Some(10 + 3000 + STOP_SLACK_MS));

    // Down: removed, volumes kept; once removed, the new one is created.
    let w = o.workloads.get_mut(&n("web")).unwrap();
    for c in w.containers.values_mut() {
        c.run = exited(143, false, 1, 30);
    }
    let p = plan(std::slice::from_ref(&new), &o, 40);
    assert_eq!(
        p.actions,
        vec![Action::RemoveWorkload {
            workload: n("web"),
            keep_data: true,
            force: false
        }]
    );
    o.workloads.clear();
    let p = plan(std::slice::from_ref(&new), &o, 50);
    assert_eq!(p.actions[0], Action::CreateWorkload { workload: n("web") });
    assert_eq!(start_of(&p), vec![(false, 0)]);
}

#[test]
fn a_stop_that_outlives_grace_and_slack_is_forced_and_a_removed_workload_loses_its_data() {
    let w = workload("old", &["oci:/a"], RestartPolicy::Always);
    let mut o = observed_with(
        &w,
        RunState::Running {
            pid: 42,
            started_at_ms: 1,
        },
        0,
        0,
    );
    o.workloads.get_mut(&n("old")).unwrap().stopping_since = Some(1_000);
    let deadline = 1_000 + 3_000 + STOP_SLACK_MS;
    let p = plan(&[], &o, deadline - 1);
    assert!(p.actions.is_empty());
    assert_eq!(p.wake_at_ms, Some(deadline));
    let p = plan(&[], &o, deadline);
    assert_eq!(
        p.actions,
        vec![Action::RemoveWorkload {
            workload: n("old"),
            keep_data: false,
            force: true
        }]
    );
}

#[test]
fn a_stopping_workload_is_never_restarted() {
    let w = workload("svc", &["oci:/a"], RestartPolicy::Always);
    let mut o = observed_with(&w, RunState::Starting, 0, 0);
    o.workloads.get_mut(&n("svc")).unwrap().stopping_since = Some(0);
    let p = plan(std::slice::from_ref(&w), &o, 1);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn a_stop_stamp_from_before_a_reboot_does_not_hold_the_removal_back() {
    let w = workload("old", &["oci:/a"], RestartPolicy::Always);
    let mut o = observed_with(
        &w,
        RunState::Running {
            pid: 4,
            started_at_ms: 1,
        },
        0,
        0,
    );
    o.workloads.get_mut(&n("old")).unwrap().stopping_since = Some(9_000_000);
    let p = plan(&[], &o, 3_000 + STOP_SLACK_MS);
    assert!(matches!(
        p.actions[..],
        [Action::RemoveWorkload { force: true, .. }]
    ));
}

#[test]
fn a_failed_new_image_leaves_the_old_workload_running_and_is_retried_later() {
    let old = workload("web", &["oci:/a"], RestartPolicy::Always);
    let mut new = old.clone();
    new.containers[0].image = img("oci:/missing");
    let mut o = observed_with(
        &old,
        RunState::Running {
            pid: 42,
            started_at_ms: 1,
        },
        0,
        0,
    );
    o.images.insert(
        "oci:/missing".into(),
        ImageState::Failed {
            error: "no such layout".into(),
            at_boot_ms: 100,
        },
    );

    let p = plan(std::slice::from_ref(&new), &o, 200);
    assert!(p.actions.is_empty());
    assert_eq!(p.wake_at_ms, Some(100 + IMAGE_RETRY_MS));
    let p = plan(std::slice::from_ref(&new), &o, 100 + IMAGE_RETRY_MS);
    assert_eq!(
        p.actions,
        vec![Action::PrepareImage {
            image: "oci:/missing".into()
        }]
    );
}

#[test]
fn restart_policies_decide_on_exit_codes_oom_kills_and_probe_kills() {
    let cases = [
        (RestartPolicy::Always, 0, false, true),
        (RestartPolicy::Always, 1, false, true),
        (RestartPolicy::OnFailure, 0, false, false),
        (RestartPolicy::OnFailure, 3, false, true),
        (RestartPolicy::OnFailure, 137, true, true),
        (RestartPolicy::Never, 1, false, false),
        (RestartPolicy::Never, 137, true, false),
    ];
    for (policy, code, oom, restarts) in cases {
        let w = workload("job", &["oci:/a"], policy);
        let o = observed_with(&w, exited(code, oom, 0, 10), 0, 0);
        let p = plan(&[w], &o, 60_000);
        assert_eq!(
            !p.actions.is_empty(),
            restarts,
            "{policy:?} code {code} oom {oom}"
        );
        assert_eq!(p.wake_at_ms, None);
    }
    // Killed by its shim after a failed liveness probe, a process that exits 0 on
    // SIGTERM is still a failure: restarted under OnFailure (as kubelet does), not Never.
    for (policy, restarts) in [
        (RestartPolicy::OnFailure, true),
        (RestartPolicy::Never, false),
    ] {
        let w = workload("job", &["oci:/a"], policy);
        let killed = RunState::Exited {
            code: 0,
            oom_killed: false,
            killed_by_probe: true,
            started_at_ms: 0,
            finished_at_ms: 10,
            ran_ms: 10,
            finished_at_boot_ms: 10,
        };
        let o = observed_with(&w, killed, 0, 0);
        let p = plan(&[w], &o, 60_000);
        assert_eq!(!p.actions.is_empty(), restarts, "{policy:?}");
    }
}

#[test]
fn crash_loops_back_off_doubling_from_one_second_to_five_minutes() {
    let w = workload("crash", &["oci:/a"], RestartPolicy::Always);
    let (mut level, mut now, mut delays) = (0u32, 1_000u64, vec![]);
    for _ in 0..12 {
        let finished = now + 50; // crashes 50 ms after each start
        let o = observed_with(&w, exited(1, false, now, finished), level, level);
        let p = plan(std::slice::from_ref(&w), &o, finished);
        let due = p.wake_at_ms.expect("waits for its back-off");
        assert!(p.actions.is_empty(), "no restart before the back-off ends");
        let p = plan(std::slice::from_ref(&w), &o, due - 1);
        assert!(p.actions.is_empty());
        let p = plan(std::slice::from_ref(&w), &o, due);
        assert_eq!(start_of(&p), vec![(true, level + 1)]);
        delays.push(due - finished);
        level += 1;
        now = due;
    }
    assert_eq!(&delays[..6], &[1_000, 2_000, 4_000, 8_000, 16_000, 32_000]);
    assert_eq!(*delays.last().unwrap(), CAP_MS);
}

#[test]
fn ten_minutes_of_running_resets_the_back_off() {
    let w = workload("svc", &["oci:/a"], RestartPolicy::Always);
    let o = observed_with(&w, exited(1, false, 0, RESET_AFTER_MS), 5, 8);
    let p = plan(std::slice::from_ref(&w), &o, RESET_AFTER_MS);
    assert_eq!(p.wake_at_ms, Some(RESET_AFTER_MS + 1_000));
    let p = plan(&[w], &o, RESET_AFTER_MS + 1_000);
    assert_eq!(start_of(&p), vec![(true, 1)]);
}

#[test]
fn lost_containers_come_back_at_once_and_failed_starts_back_off() {
    let w = workload("svc", &["oci:/a"], RestartPolicy::Never);
    let o = observed_with(&w, RunState::Lost, 2, 3);
    assert_eq!(
        start_of(&plan(std::slice::from_ref(&w), &o, 0)),
        vec![(true, 3)],
        "even with Never: a power cut is no exit"
    );

    let o = observed_with(
        &w,
        RunState::StartFailed {
            at_boot_ms: 100,
            kind: StartErrorKind::Runtime,
            error: "boom".into(),
        },
        0,
        2,
    );
    let p = plan(std::slice::from_ref(&w), &o, 100);
    assert_eq!(p.wake_at_ms, Some(100 + 4_000));
    assert_eq!(start_of(&plan(&[w], &o, 4_100)), vec![(true, 3)]);
}

#[test]
fn a_missing_container_record_is_started_and_starting_ones_are_left_alone() {
    let w = workload("pod", &["oci:/a", "oci:/a"], RestartPolicy::Always);
    let mut o = observed_with(&w, RunState::Starting, 0, 0);
    o.workloads
        .get_mut(&n("pod"))
        .unwrap()
        .containers
        .remove(&n("c1"));
    assert_eq!(
        start_of(&plan(std::slice::from_ref(&w), &o, 0)),
        vec![(false, 0)]
    );
    let o = observed_with(&w, RunState::NotCreated, 0, 0);
    assert_eq!(start_of(&plan(&[w], &o, 0)), vec![(false, 0), (false, 0)]);
}

#[test]
fn removals_come_before_starts() {
    let gone = workload("gone", &["oci:/a"], RestartPolicy::Always);
    let new = workload("new", &["oci:/a"], RestartPolicy::Always);
    let mut o = observed_with(
        &gone,
        RunState::Running {
            pid: 1,
            started_at_ms: 0,
        },
        0,
        0,
    );
    ready(&mut o, &["oci:/a"]);
    let p = plan(&[new], &o, 0);
    assert!(matches!(p.actions[0], Action::StopWorkload { .. }));
    assert!(matches!(p.actions[1], Action::CreateWorkload { .. }));
}

#[test]
fn an_image_being_pulled_is_not_asked_for_again() {
    let w = workload("web", &["oci:/a"], RestartPolicy::Always);
    let mut o = Observed::default();
    o.images.insert(
        "oci:/a".into(),
        ImageState::Pulling {
            done_bytes: 1,
            total_bytes: 9,
        },
    );
    assert_eq!(plan(&[w], &o, 0), Plan::default());
}

#[test]
fn a_spec_that_cannot_run_is_not_retried_until_it_changes() {
    let w = workload("bad", &["oci:/a"], RestartPolicy::Always);
    let o = observed_with(
        &w,
        RunState::StartFailed {
            at_boot_ms: 100,
            kind: StartErrorKind::Spec,
            error: "user nobody is not in the image".into(),
        },
        0,
        0,
    );
    let p = plan(std::slice::from_ref(&w), &o, 10_000_000);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.wake_at_ms, None, "no hot loop, no timer");
}

#[test]
fn a_start_that_found_its_image_gone_pulls_it_again_then_retries() {
    let w = workload("app", &["oci:/a"], RestartPolicy::Always);
    let mut o = observed_with(
        &w,
        RunState::StartFailed {
            at_boot_ms: 100,
            kind: StartErrorKind::Image,
            error: "image oci:/a is not in the local store".into(),
        },
        0,
        1,
    );
    let p = plan(std::slice::from_ref(&w), &o, 5_000);
    assert_eq!(
        p.actions,
        vec![Action::PrepareImage {
            image: "oci:/a".into()
        }]
    );
    ready(&mut o, &["oci:/a"]);
    let p = plan(std::slice::from_ref(&w), &o, 150);
    assert_eq!(
        start_of(&p),
        vec![(true, 1)],
        "at once, the back-off level unchanged"
    );
}

#[test]
fn back_off_is_counted_on_the_boot_clock_and_a_stamp_from_before_a_reboot_waits_no_longer() {
    let w = workload("svc", &["oci:/a"], RestartPolicy::Always);
    // Level 3: 8 s after the exit at boot time 50 s.
    let o = observed_with(&w, exited(1, false, 49_000, 50_000), 3, 3);
    let p = plan(std::slice::from_ref(&w), &o, 51_000);
    assert_eq!(p.wake_at_ms, Some(58_000));
    assert_eq!(
        start_of(&plan(std::slice::from_ref(&w), &o, 58_000)),
        vec![(true, 4)]
    );
    // Exit stamped by the previous boot (later than "now" on a fresh boot clock).
    let o = observed_with(&w, exited(1, false, 1_990_000, 2_000_000), 3, 3);
    assert_eq!(
        start_of(&plan(std::slice::from_ref(&w), &o, 9_000)),
        vec![(true, 4)]
    );
}

#[test]
fn a_change_of_rollout_bookkeeping_only_updates_the_record_and_restarts_nothing() {
    let running = RunState::Running {
        pid: 7,
        started_at_ms: 0,
    };
    let created = WorkloadSpec {
        revision: 4,
        ..workload("web", &["oci:/a"], RestartPolicy::Always)
    };
    let mut o = observed_with(&created, running, 0, 0);
    ready(&mut o, &["oci:/a"]);
    // Revision 6 with the template of 4 (applied again), and a fallback and timeout.
    let again = WorkloadSpec {
        revision: 6,
        health_timeout_ms: 60_000,
        min_ready_ms: 5_000,
        fallback: Some(Box::new(created.clone())),
        ..created.clone()
    };
    let p = plan(std::slice::from_ref(&again), &o, 1_000);
    assert_eq!(
        p.actions,
        vec![Action::UpdateRevision { workload: n("web") }]
    );
    // Anything that changes how it runs still replaces it.
    let changed = WorkloadSpec {
        stop_grace_ms: 1,
        ..again
    };
    let p = plan(&[changed], &o, 1_000);
    assert_eq!(p.actions, vec![Action::StopWorkload { workload: n("web") }]);
}

#[test]
fn a_requested_restart_starts_a_stopped_container_at_once_whatever_its_policy() {
    for policy in [RestartPolicy::Never, RestartPolicy::Always] {
        let w = workload("web", &["oci:/a"], policy);
        // Just exited after a quick run, at back-off level 3: no waiting.
        let mut o = observed_with(&w, exited(0, false, 59_000, 59_500), 4, 3);
        for c in o
            .workloads
            .get_mut(&n("web"))
            .unwrap()
            .containers
            .values_mut()
        {
            c.restart_requested = true;
        }
        let p = plan(std::slice::from_ref(&w), &o, 60_000);
        assert_eq!(start_of(&p), vec![(true, 0)], "{policy:?}");
        // While it still runs, nothing happens: the stop was requested, not yet observed.
        let mut running = observed_with(
            &w,
            RunState::Running {
                pid: 9,
                started_at_ms: 1,
            },
            4,
            3,
        );
        for c in running
            .workloads
            .get_mut(&n("web"))
            .unwrap()
            .containers
            .values_mut()
        {
            c.restart_requested = true;
        }
        assert!(plan(&[w], &running, 60_000).actions.is_empty());
    }
}
