//! Unit tests of start order (`dependsOn`) in the planner, on hand-made snapshots.

use drover_protocol::*;

use super::*;

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn dep(name: &str, condition: DependencyCondition) -> Dependency {
    Dependency {
        name: n(name),
        condition,
    }
}

/// Workload `name`, one container `app` on image `oci:/{name}`, depending on `deps`.
fn wl(name: &str, deps: &[Dependency]) -> WorkloadSpec {
    let c = ContainerSpec::new(n("app"), ImageRef::new(format!("oci:/{name}")).unwrap());
    let mut w = WorkloadSpec::new(n(name), vec![c]);
    w.depends_on = deps.to_vec();
    w
}

fn running() -> RunState {
    RunState::Running {
        pid: 7,
        started_at_ms: 1,
    }
}

fn exited(code: i32) -> RunState {
    RunState::Exited {
        code,
        oom_killed: false,
        killed_by_probe: false,
        started_at_ms: 1,
        finished_at_ms: 2,
        ran_ms: 1,
        finished_at_boot_ms: 2,
    }
}

fn container(run: RunState, ready: bool) -> ObservedContainer {
    ObservedContainer {
        run,
        restarts: 0,
        backoff_level: 0,
        probes: Default::default(),
        restart_requested: false,
        ready,
    }
}

/// `desired`'s images all ready; nothing created.
fn images_of(desired: &[WorkloadSpec]) -> Observed {
    let mut o = Observed::default();
    for c in desired.iter().flat_map(|w| &w.containers) {
        o.images.insert(c.image.to_string(), ImageState::Ready);
    }
    o
}

/// Records `spec` as created, each container in the state `runs` gives by name.
fn put(o: &mut Observed, spec: &WorkloadSpec, runs: &[(&str, RunState, bool)]) {
    let containers = runs
        .iter()
        .map(|(c, run, ready)| (n(c), container(run.clone(), *ready)))
        .collect();
    o.workloads.insert(
        spec.name.clone(),
        ObservedWorkload {
            spec: spec.clone(),
            containers,
            stopping_since: None,
        },
    );
}

/// `(workload, container)` of every start, and the workloads created.
fn starts(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateWorkload { workload } => Some(format!("create {workload}")),
            Action::StartContainer {
                workload,
                container,
                ..
            } => Some(format!("start {workload}/{container}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_workload_is_created_only_once_its_dependency_has_started_and_pulls_meanwhile() {
    let a = wl("a", &[]);
    let b = wl("b", &[dep("a", DependencyCondition::Started)]);
    let desired = [b.clone(), a.clone()];
    let p = plan(&desired, &Observed::default(), 0);
    assert_eq!(
        p.actions,
        vec![
            Action::PrepareImage {
                image: "oci:/b".into()
            },
            Action::PrepareImage {
                image: "oci:/a".into()
            }
        ],
        "b's image is pulled while it waits"
    );
    let mut o = images_of(&desired);
    assert_eq!(starts(&plan(&desired, &o, 0)), ["create a", "start a/app"]);
    put(&mut o, &a, &[("app", RunState::Starting, false)]);
    assert_eq!(starts(&plan(&desired, &o, 0)), Vec::<String>::new());
    put(&mut o, &a, &[("app", running(), true)]);
    assert_eq!(starts(&plan(&desired, &o, 0)), ["create b", "start b/app"]);
}

#[test]
fn a_dependency_that_is_not_desired_is_a_wait() {
    let b = wl("b", &[dep("a", DependencyCondition::Started)]);
    let mut o = images_of(std::slice::from_ref(&b));
    assert_eq!(
        starts(&plan(std::slice::from_ref(&b), &o, 0)),
        Vec::<String>::new()
    );
    // Even one that still runs but is no longer desired (being removed) does not count.
    put(&mut o, &wl("a", &[]), &[("app", running(), true)]);
    let p = plan(std::slice::from_ref(&b), &o, 0);
    assert_eq!(p.actions, vec![Action::StopWorkload { workload: n("a") }]);
}

#[test]
fn healthy_waits_for_ready_and_no_probe_means_ready_when_running() {
    let a = wl("a", &[]);
    let b = wl("b", &[dep("a", DependencyCondition::Healthy)]);
    let desired = [a.clone(), b.clone()];
    let mut o = images_of(&desired);
    put(&mut o, &a, &[("app", running(), false)]);
    assert!(
        starts(&plan(&desired, &o, 0)).is_empty(),
        "running, not ready"
    );
    put(&mut o, &a, &[("app", running(), true)]);
    assert_eq!(starts(&plan(&desired, &o, 0)), ["create b", "start b/app"]);
}

#[test]
fn completed_waits_for_exit_code_zero() {
    let a = wl("a", &[]);
    let b = wl("b", &[dep("a", DependencyCondition::Completed)]);
    let mut a_once = a.clone();
    a_once.restart_policy = RestartPolicy::Never;
    let desired = [a_once.clone(), b.clone()];
    let mut o = images_of(&desired);
    put(&mut o, &a_once, &[("app", running(), true)]);
    assert!(starts(&plan(&desired, &o, 0)).is_empty(), "still running");
    put(&mut o, &a_once, &[("app", exited(1), false)]);
    assert!(starts(&plan(&desired, &o, 0)).is_empty(), "failed");
    put(&mut o, &a_once, &[("app", exited(0), false)]);
    assert_eq!(starts(&plan(&desired, &o, 0)), ["create b", "start b/app"]);
}

#[test]
fn a_finished_one_shot_counts_as_started_and_healthy_but_one_to_be_restarted_does_not() {
    let mut job = wl("job", &[]);
    job.restart_policy = RestartPolicy::OnFailure;
    let b = wl("b", &[dep("job", DependencyCondition::Healthy)]);
    let desired = [job.clone(), b.clone()];
    let mut o = images_of(&desired);
    put(&mut o, &job, &[("app", exited(0), false)]);
    assert_eq!(starts(&plan(&desired, &o, 0)), ["create b", "start b/app"]);
    let mut svc = job.clone();
    svc.restart_policy = RestartPolicy::Always;
    let desired = [svc.clone(), b.clone()];
    put(&mut o, &svc, &[("app", exited(0), false)]);
    let p = plan(&desired, &o, 1_000_000);
    assert_eq!(starts(&p), ["start job/app"], "b waits for its restart");
}

#[test]
fn a_stopping_dependency_is_not_met() {
    let a = wl("a", &[]);
    let b = wl("b", &[dep("a", DependencyCondition::Started)]);
    let desired = [a.clone(), b.clone()];
    let mut o = images_of(&desired);
    put(&mut o, &a, &[("app", running(), true)]);
    o.workloads.get_mut(&n("a")).unwrap().stopping_since = Some(0);
    assert!(starts(&plan(&desired, &o, 1)).is_empty());
}

/// Workload `pod`: `init` runs to completion, `db` starts after it, `app` once db is
/// healthy.
fn pod() -> WorkloadSpec {
    let image = || ImageRef::new("oci:/pod").unwrap();
    let mut init = ContainerSpec::new(n("init"), image());
    init.command = vec!["migrate".into()];
    let mut db = ContainerSpec::new(n("db"), image());
    db.depends_on = vec![dep("init", DependencyCondition::Completed)];
    let mut app = ContainerSpec::new(n("app"), image());
    app.depends_on = vec![dep("db", DependencyCondition::Healthy)];
    let mut w = WorkloadSpec::new(n("pod"), vec![app, db, init]);
    w.restart_policy = RestartPolicy::OnFailure;
    w
}

#[test]
fn containers_of_a_workload_start_in_the_order_their_dependencies_give() {
    let w = pod();
    let desired = [w.clone()];
    let mut o = images_of(&desired);
    assert_eq!(
        starts(&plan(&desired, &o, 0)),
        ["create pod", "start pod/init"],
        "only the container that waits for nobody starts with the workload"
    );
    let nc = RunState::NotCreated;
    put(
        &mut o,
        &w,
        &[
            ("app", nc.clone(), false),
            ("db", nc.clone(), false),
            ("init", running(), true),
        ],
    );
    assert!(starts(&plan(&desired, &o, 0)).is_empty(), "init still runs");
    put(
        &mut o,
        &w,
        &[
            ("app", nc.clone(), false),
            ("db", nc, false),
            ("init", exited(0), false),
        ],
    );
    assert_eq!(starts(&plan(&desired, &o, 0)), ["start pod/db"]);
    let runs = |db_ready| {
        [
            ("app", RunState::NotCreated, false),
            ("db", running(), db_ready),
            ("init", exited(0), false),
        ]
    };
    put(&mut o, &w, &runs(false));
    assert!(starts(&plan(&desired, &o, 0)).is_empty(), "db not ready");
    put(&mut o, &w, &runs(true));
    assert_eq!(starts(&plan(&desired, &o, 0)), ["start pod/app"]);
}

#[test]
fn after_a_power_cut_dependents_start_again_only_once_their_dependencies_are_back() {
    let a = wl("a", &[]);
    let b = wl("b", &[dep("a", DependencyCondition::Healthy)]);
    let desired = [b.clone(), a.clone()];
    let mut o = images_of(&desired);
    put(&mut o, &a, &[("app", RunState::Lost, false)]);
    put(&mut o, &b, &[("app", RunState::Lost, false)]);
    assert_eq!(starts(&plan(&desired, &o, 5)), ["start a/app"]);
    put(&mut o, &a, &[("app", running(), false)]);
    assert!(starts(&plan(&desired, &o, 5)).is_empty(), "a not ready yet");
    put(&mut o, &a, &[("app", running(), true)]);
    assert_eq!(starts(&plan(&desired, &o, 5)), ["start b/app"]);
}

#[test]
fn a_restarting_dependency_never_stops_its_dependents_but_holds_their_restarts() {
    let a = wl("a", &[]);
    let b = wl("b", &[dep("a", DependencyCondition::Started)]);
    let desired = [a.clone(), b.clone()];
    let mut o = images_of(&desired);
    put(&mut o, &a, &[("app", exited(1), false)]);
    put(&mut o, &b, &[("app", running(), true)]);
    let p = plan(&desired, &o, 2);
    assert!(p.actions.is_empty(), "b keeps running: {:?}", p.actions);
    assert_eq!(p.wake_at_ms, Some(1_002), "a's back-off");
    put(&mut o, &b, &[("app", exited(1), false)]);
    assert_eq!(
        starts(&plan(&desired, &o, 1_002)),
        ["start a/app"],
        "b's restart waits for a"
    );
}
