//! End-to-end: what an agent finds on the state disk when it starts is never taken for a
//! lost container. Containers started by an agent from before `run_dir` are adopted
//! (same processes, stoppable and removable), and a container that finished stays
//! finished after a reboot emptied the runtime folder. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::time::Duration;

use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::{pid_alive, require_root, wait_for};

const T: Duration = Duration::from_secs(30);
const SLEEPER: &str = "echo up; while true; do sleep 1; done";

/// Agents before `run_dir` kept everything in the state folder: the shim's folder
/// (`bundle/`, `etc/`, `status.json`, `shim.log`, overlay) in `state/containers/{id}`,
/// libcontainer state in `state/runtime`, the report in `state/status.json`. With
/// `run_dir` set to the state folder, today's agent computes exactly those paths
/// (`StatePaths::container_dir` and `container_data_dir` coincide, `runtime()` is
/// `state/runtime`), and its shims write their status there as the old ones did: that is
/// the old layout, made by real shims, without keeping an old binary around.
#[test]
fn containers_of_an_agent_from_before_run_dir_are_adopted_not_started_twice() {
    if !require_root("containers_of_an_agent_from_before_run_dir_are_adopted_not_started_twice") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("upgrade");
    let state = a.state.clone();
    a.set_run_dir(&state);
    a.start();
    a.write_manifest(
        "web.yaml",
        &workload_yaml("web", &image, SLEEPER, "", "memory: 32Mi"),
    );
    let old_pid = a.wait_running("web", "main", T);
    assert!(state.join("containers/web.main/status.json").is_file());
    assert!(
        state.join("runtime/web.main").is_dir(),
        "libcontainer state"
    );
    a.stop();

    // The upgrade: same state folder, runtime folder elsewhere (empty, as after install).
    let run = a.run_dir();
    a.set_run_dir(&run);
    a.start();
    let ps = a.wait_ps("a report from the new agent", T, |_| true);
    let c = a.container("web", "main").unwrap();
    assert_eq!(c["phase"], "Running", "{ps}\n{}", a.logs());
    assert_eq!(c["restarts"], 0, "adoption restarted it: {ps}");
    assert_eq!(c["pid"], old_pid, "{ps}\n{}", a.logs());
    // A few passes later, still the one container: no second instance next to it.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(a.running_pid("web", "main"), Some(old_pid), "{}", a.logs());
    let (_, log, _) = a.cli(&["logs", "web"]);
    assert_eq!(log.matches("up").count(), 1, "started twice: {log}");

    // Stopping and removing it works through the links.
    a.remove_manifest("web.yaml");
    a.wait_ps("web removed", T, |p| {
        p["workloads"].as_array().is_some_and(|w| w.is_empty())
    });
    assert!(!pid_alive(old_pid), "the adopted container still runs");
    assert!(!state.join("containers/web.main").exists());
    assert!(
        !state.join("runtime/web.main").exists(),
        "old libcontainer state left"
    );
    assert!(
        fs::symlink_metadata(run.join("runtime/web.main")).is_err(),
        "runtime link left"
    );

    // The same name starts afresh in the new layout.
    a.write_manifest(
        "web.yaml",
        &workload_yaml("web", &image, SLEEPER, "", "memory: 32Mi"),
    );
    let pid = a.wait_running("web", "main", T);
    assert_ne!(pid, old_pid);
    assert!(run.join("runtime/web.main").is_dir(), "{}", a.logs());
}

/// An old agent's container that finished before the upgrade stays finished.
#[test]
fn a_container_that_finished_under_an_older_agent_is_not_run_again() {
    if !require_root("a_container_that_finished_under_an_older_agent_is_not_run_again") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("upgradedone");
    let state = a.state.clone();
    a.set_run_dir(&state);
    a.start();
    let yaml = workload_yaml("job", &image, "echo ran", "  restartPolicy: Never\n", "");
    a.write_manifest("job.yaml", &yaml);
    a.wait_all_in_phase(1, "Succeeded", T);
    a.stop();
    let run = a.run_dir();
    a.set_run_dir(&run);
    a.start();
    let ps = a.wait_ps("a report from the new agent", T, |_| true);
    std::thread::sleep(Duration::from_secs(5));
    let ps2 = a.wait_all_in_phase(1, "Succeeded", T);
    let (_, log, _) = a.cli(&["logs", "job"]);
    assert_eq!(
        log.matches("ran").count(),
        1,
        "run again: {ps}\n{ps2}\n{log}"
    );
}

/// A reboot empties the runtime folder (a tmpfs): the final status of a container that
/// finished must come from the state disk, not be taken for a lost container.
#[test]
fn a_finished_container_stays_finished_after_a_reboot() {
    if !require_root("a_finished_container_stays_finished_after_a_reboot") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("rebootdone");
    a.start();
    let yaml = workload_yaml("job", &image, "echo ran", "  restartPolicy: Never\n", "");
    a.write_manifest("job.yaml", &yaml);
    let fail = workload_yaml(
        "bad",
        &image,
        "echo ran; exit 3",
        "  restartPolicy: Never\n",
        "",
    );
    a.write_manifest("bad.yaml", &fail);
    a.wait_ps("both finished", T, |p| {
        let phase = |n: &str| {
            p["workloads"]
                .as_array()
                .and_then(|w| w.iter().find(|w| w["name"] == n))
                .map(|w| w["phase"].clone())
        };
        phase("job") == Some("Succeeded".into()) && phase("bad") == Some("Failed".into())
    });

    a.power_cut();
    a.empty_run_dir();
    a.start();
    a.wait_ps("a report from the rebooted agent", T, |_| true);
    std::thread::sleep(Duration::from_secs(5));
    let ps = a.wait_ps("a report", T, |_| true);
    for (wl, phase, code) in [("job", "Succeeded", 0), ("bad", "Failed", 3)] {
        let w = ps["workloads"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == wl))
            .unwrap();
        assert_eq!(w["phase"], phase, "{wl}: {ps}\n{}", a.logs());
        let c = a.container(wl, "main").unwrap();
        assert_eq!(c["exit_code"], code, "{wl}: {c}");
        let (_, log, _) = a.cli(&["logs", wl]);
        assert_eq!(log.matches("ran").count(), 1, "{wl} ran again: {log}");
    }

    // A restart forgets the durable copy: OnFailure restarts a container that failed
    // once (a marker in its volume), and while the second instance runs, the first
    // one's exit must be gone from the disk, else the next reboot would resurrect it.
    let once = format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: once}}\nspec:\n  restartPolicy: OnFailure\n  stopGracePeriod: 1s\n  volumes: [{{name: data}}]\n  containers:\n    - name: main\n      image: oci:{}:latest\n      command: [/bin/sh, -c, \"[ -e /data/x ] || {{ touch /data/x; exit 1; }}; while true; do sleep 1; done\"]\n      mounts: [{{volume: data, mountPath: /data}}]\n",
        image.display()
    );
    a.write_manifest("once.yaml", &once);
    wait_for("once restarted and running", T, || {
        a.container("once", "main")
            .filter(|c| c["phase"] == "Running" && c["restarts"] == 1)
    });
    assert!(
        !a.state.join("containers/once.main/status.json").exists(),
        "the first instance's exit is still on disk"
    );
    a.power_cut();
    a.empty_run_dir();
    a.start();
    let revived = wait_for("once running again after the reboot", T, || {
        a.running_pid("once", "main")
    });
    assert!(pid_alive(revived));
}
