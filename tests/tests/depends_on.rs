//! End-to-end: start order (`dependsOn`) with real containers — a workload waits for one
//! that is not there yet (`started`), for a job to finish (`completed`) and for one to run
//! and be ready (`healthy`; without probes, running is ready), and after a power cut the
//! order holds again: the dependent is not started before its dependency runs, while the
//! dependency's failing restarts show as CrashLoopBackOff. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::{require_root, wait_for};

const T: Duration = Duration::from_secs(30);
const SLEEPER: &str = "echo up; while true; do sleep 1; done";

/// `spec:` lines (indented by two) for `dependsOn: [{workload, condition}]`.
fn depends_on(workload: &str, condition: &str) -> String {
    format!("  dependsOn:\n    - {{workload: {workload}, condition: {condition}}}\n")
}

fn workload<'a>(ps: &'a Value, name: &str) -> Option<&'a Value> {
    ps["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)
}

/// The dependency `name` is waiting for, per its status reason (`None`: not waiting).
fn waiting_for(ps: &Value, name: &str) -> Option<String> {
    let dep = &workload(ps, name)?["reason"]["WaitingForDependency"]["dependency"];
    Some(format!(
        "{} {}",
        dep["name"].as_str()?,
        dep["condition"].as_str()?
    ))
}

/// An agent (started) with a host folder `db-data` and workload `db` sleeping with that
/// folder at `/data`; `container` is YAML for `db`'s container (at its indentation).
fn agent_with_db(test: &str, container: &str) -> (TestAgent, PathBuf, PathBuf, String) {
    let (mut a, image) = TestAgent::with_busybox(test);
    let data = a.dir.path().join("db-data");
    fs::create_dir_all(&data).unwrap();
    a.append_config(&format!(
        "[security]\nhost_paths = [\"{}\"]\n",
        data.display()
    ));
    a.start();
    let db = workload_yaml("db", &image, SLEEPER, "", "").replace(
        "      resources:",
        &format!(
            "      mounts: [{{hostPath: {}, mountPath: /data}}]\n{container}      resources:",
            data.display()
        ),
    );
    (a, image, data, db)
}

fn started_at(a: &TestAgent, wl: &str) -> u64 {
    a.container(wl, "main").unwrap()["started_at_ms"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_workload_waits_for_a_missing_dependency_and_for_a_job_to_complete() {
    if !require_root("a_workload_waits_for_a_missing_dependency_and_for_a_job_to_complete") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("dependson");
    a.start();

    // started: `front` names `back`, which is not desired yet.
    a.write_manifest(
        "front.yaml",
        &workload_yaml("front", &image, SLEEPER, &depends_on("back", "started"), ""),
    );
    let ps = a.wait_ps("front waiting for back", T, |p| {
        waiting_for(p, "front").as_deref() == Some("back Started")
    });
    assert_eq!(workload(&ps, "front").unwrap()["phase"], "Pending");
    let (_, table, _) = a.cli(&["ps"]);
    assert!(
        table.contains("Waiting") && table.contains("front: waiting for back to be started"),
        "{table}"
    );
    assert!(a.container("front", "main").unwrap()["pid"].is_null());
    a.write_manifest("back.yaml", &workload_yaml("back", &image, SLEEPER, "", ""));
    a.wait_running("front", "main", T);
    assert!(started_at(&a, "front") >= started_at(&a, "back"));

    // completed: `report` (its file read first) runs only after `job` exited with 0.
    let job = "echo migrating; sleep 3; echo done";
    let never = "  restartPolicy: Never\n";
    a.write_manifest(
        "1-report.yaml",
        &workload_yaml(
            "report",
            &image,
            SLEEPER,
            &depends_on("job", "completed"),
            "",
        ),
    );
    a.write_manifest("2-job.yaml", &workload_yaml("job", &image, job, never, ""));
    let job_pid = a.wait_running("job", "main", T);
    let ps = a.ps().unwrap();
    assert_eq!(
        waiting_for(&ps, "report").as_deref(),
        Some("job Completed"),
        "{ps}"
    );
    assert!(a.container("report", "main").unwrap()["pid"].is_null());
    a.wait_running("report", "main", T);
    let job_st = a.container("job", "main").unwrap();
    assert_eq!(
        (&job_st["phase"], &job_st["exit_code"]),
        (&Value::from("Succeeded"), &Value::from(0)),
        "pid {job_pid}"
    );
    let ran = started_at(&a, "report") - started_at(&a, "job");
    assert!(
        ran >= 2_900,
        "report started {ran} ms after job, before it ended"
    );

    // A cycle across two files is refused; the last good state stays in force.
    let front = a.running_pid("front", "main").unwrap();
    a.write_manifest(
        "x.yaml",
        &workload_yaml("x", &image, SLEEPER, &depends_on("y", "started"), ""),
    );
    a.wait_ps("x waiting for y", T, |p| {
        waiting_for(p, "x").as_deref() == Some("y Started")
    });
    a.write_manifest(
        "y.yaml",
        &workload_yaml("y", &image, SLEEPER, &depends_on("x", "started"), ""),
    );
    let warning = wait_for("the cycle reported by ps", T, || {
        let (_, _, err) = a.cli(&["ps"]);
        err.contains("dependsOn forms a cycle across manifest files")
            .then_some(err)
    });
    assert!(
        warning.contains("x.yaml) → y (") && warning.contains("y.yaml) → x ("),
        "{warning}"
    );
    // x alone was a good state (waiting for y); with y the folder is refused as a whole.
    let ps = a.ps().unwrap();
    assert!(workload(&ps, "y").is_none(), "{ps}");
    assert_eq!(waiting_for(&ps, "x").as_deref(), Some("y Started"), "{ps}");
    assert_eq!(a.running_pid("front", "main"), Some(front));
}

#[test]
fn after_a_power_cut_the_dependent_waits_for_its_dependency_to_run_again() {
    if !require_root("after_a_power_cut_the_dependent_waits_for_its_dependency_to_run_again") {
        return;
    }
    // db needs a host folder; app (whose file is read first) waits for db to be healthy:
    // without probes, running and ready.
    let (mut a, image, data, db) = agent_with_db("dependson-cut", "");
    a.write_manifest("2-db.yaml", &db);
    a.write_manifest(
        "1-app.yaml",
        &workload_yaml("app", &image, SLEEPER, &depends_on("db", "healthy"), ""),
    );
    a.wait_running("db", "main", T);
    let before = a.wait_running("app", "main", T);
    assert!(started_at(&a, "app") >= started_at(&a, "db"));

    // Power cut; when the board comes back, db cannot start (its folder is missing).
    a.power_cut();
    fs::remove_dir(&data).unwrap();
    a.start();
    let ps = a.wait_ps("db failing again and again", T, |p| {
        workload(p, "db").is_some_and(|w| w["reason"]["CrashLoopBackOff"].is_object())
    });
    assert_eq!(
        waiting_for(&ps, "app").as_deref(),
        Some("db Healthy"),
        "{ps}"
    );
    let app = a.container("app", "main").unwrap();
    assert!(app["pid"].is_null(), "app started before db: {app}");
    let (_, table, _) = a.cli(&["ps"]);
    assert!(
        table.contains("CrashLoopBackOff (retry in") && table.contains("Waiting"),
        "{table}"
    );

    fs::create_dir_all(&data).unwrap();
    a.wait_running("db", "main", Duration::from_secs(60));
    let after = a.wait_running("app", "main", T);
    assert_ne!(before, after, "app is a new process");
    assert!(
        started_at(&a, "app") >= started_at(&a, "db"),
        "app started before db after the power cut:\n{}",
        a.logs()
    );
    let ps = wait_for("reasons cleared", T, || {
        a.ps().filter(|p| {
            workload(p, "db").is_some_and(|w| w["reason"].is_null())
                && workload(p, "app").is_some_and(|w| w["reason"].is_null())
        })
    });
    assert_eq!(workload(&ps, "app").unwrap()["phase"], "Running");
}

#[test]
fn a_workload_waits_until_its_dependency_passes_its_readiness_probe() {
    if !require_root("a_workload_waits_until_its_dependency_passes_its_readiness_probe") {
        return;
    }
    // db runs at once but is ready only once the test creates /data/ready.
    let probe = "      readinessProbe:\n        exec: {command: [test, -f, /data/ready]}\n        periodSeconds: 1\n";
    let (a, image, data, db) = agent_with_db("dependson-probe", probe);
    a.write_manifest("db.yaml", &db);
    a.write_manifest(
        "app.yaml",
        &workload_yaml("app", &image, SLEEPER, &depends_on("db", "healthy"), ""),
    );
    a.wait_running("db", "main", T);
    // Several probe periods with db running and not ready: app must keep waiting.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        let ps = a.ps().unwrap();
        assert_eq!(
            a.container("db", "main").unwrap()["ready"],
            false,
            "db ready without its file: {ps}"
        );
        assert!(
            a.container("app", "main")
                .is_none_or(|c| c["pid"].is_null()),
            "app started before db was ready: {ps}"
        );
        assert_eq!(
            waiting_for(&ps, "app").as_deref(),
            Some("db Healthy"),
            "{ps}"
        );
    }
    fs::write(data.join("ready"), b"").unwrap();
    a.wait_running("app", "main", T);
    let db = a.container("db", "main").unwrap();
    assert_eq!(db["ready"], true, "{db}");
    assert!(started_at(&a, "app") >= started_at(&a, "db"));
}
