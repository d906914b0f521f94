//! End-to-end: the reconciler's promises with real containers — OOM kills and back-off,
//! the pids limit, removal, replacement, adoption after kill -9, recovery after a power
//! cut, and bad input that changes nothing. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::time::{Duration, Instant};

use drover_tests::agent::{TestAgent, last_error, workload_yaml};
use drover_tests::{oci, pid_alive, require_root, wait_for};

const T: Duration = Duration::from_secs(30);
const SLEEPER: &str = "echo up; while true; do sleep 1; done";

#[test]
fn oom_killed_workload_is_reported_and_restarted_with_back_off_and_pids_limit_holds() {
    if !require_root(
        "oom_killed_workload_is_reported_and_restarted_with_back_off_and_pids_limit_holds",
    ) {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("oom");
    a.start();
    // dd's 64 MiB buffer is filled from /dev/zero: far past the 16 MiB limit.
    let hog = "echo allocating; exec dd if=/dev/zero of=/dev/null bs=64M count=1";
    a.write_manifest(
        "hog.yaml",
        &workload_yaml("hog", &image, hog, "", "memory: 16Mi"),
    );
    // The inner shell forks until the limit stops it (ash gives up on a failed fork).
    let forker = "sh -c 'i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done'; echo spawned; exec sleep 1000";
    a.write_manifest(
        "forker.yaml",
        &workload_yaml("forker", &image, forker, "", "pids: 8"),
    );

    // Restarts 0 → 1 → 2, with the second back-off (2 s) longer than the first (1 s).
    let mut seen_at = Vec::new();
    let mut saw_backoff_oom = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen_at.len() < 3 && Instant::now() < deadline {
        if let Some(c) = a.container("hog", "main") {
            let restarts = c["restarts"].as_u64().unwrap_or(0) as usize;
            if restarts == seen_at.len() && (restarts > 0 || c["phase"] != "Pending") {
                seen_at.push(Instant::now());
            }
            if c["phase"] == "BackOff" && c["oom_killed"] == true && c["exit_code"] == 137 {
                saw_backoff_oom = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        seen_at.len(),
        3,
        "hog did not restart twice: {:?}",
        a.container("hog", "main")
    );
    assert!(
        saw_backoff_oom,
        "never saw hog in BackOff with oom_killed and exit code 137"
    );
    let (first, second) = (seen_at[1] - seen_at[0], seen_at[2] - seen_at[1]);
    assert!(
        second >= Duration::from_millis(1900),
        "second back-off too short: {second:?} (first {first:?})"
    );
    let (_, log, _) = a.cli(&["logs", "hog"]);
    assert!(log.matches("allocating").count() >= 2, "{log}");

    // The pids limit: at most 8 processes, and the shell was told so.
    a.wait_running("forker", "main", T);
    let log = wait_for("forker to give up forking", T, || {
        let (_, log, _) = a.cli(&["logs", "forker"]);
        log.contains("spawned").then_some(log)
    });
    let current: u32 = fs::read_to_string(a.cgroup_file("pids", "forker", "main", "pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((2..=8).contains(&current), "pids.current = {current}");
    assert!(
        log.contains("can't fork"),
        "no fork failure in the log: {log}"
    );
}

#[test]
fn removing_a_manifest_stops_and_deletes_the_workload_and_its_cgroup() {
    if !require_root("removing_a_manifest_stops_and_deletes_the_workload_and_its_cgroup") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("remove");
    a.start();
    a.write_manifest(
        "gone.yaml",
        &workload_yaml("gone", &image, SLEEPER, "", "memory: 32Mi"),
    );
    a.write_manifest(
        "stays.yaml",
        &workload_yaml("stays", &image, SLEEPER, "", "memory: 32Mi"),
    );
    let pid = a.wait_running("gone", "main", T);
    let stays = a.wait_running("stays", "main", T);
    assert!(a.workload_cgroup("memory", "gone").exists());

    a.remove_manifest("gone.yaml");
    a.wait_ps("gone removed", T, |p| {
        p["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["name"] != "gone")
    });
    wait_for("gone's records to disappear", T, || {
        (!a.state.join("workloads/gone.json").exists()).then_some(())
    });
    assert!(!pid_alive(pid), "container {pid} still alive");
    for ctrl in ["memory", "pids", "cpu", "devices", "freezer"] {
        assert!(
            !a.workload_cgroup(ctrl, "gone").exists(),
            "{ctrl} cgroup of gone left behind"
        );
    }
    assert!(!a.state.join("containers/gone.main").exists());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("gone.main"), "rootfs still mounted");
    assert_eq!(
        a.wait_running("stays", "main", T),
        stays,
        "the other workload was touched"
    );
}

#[test]
fn a_changed_spec_replaces_its_workload_and_leaves_the_others_alone() {
    if !require_root("a_changed_spec_replaces_its_workload_and_leaves_the_others_alone") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("replace");
    a.start();
    a.write_manifest(
        "a.yaml",
        &workload_yaml("a", &image, SLEEPER, "", "memory: 32Mi"),
    );
    a.write_manifest(
        "b.yaml",
        &workload_yaml("b", &image, SLEEPER, "", "memory: 32Mi"),
    );
    let (pa, pb) = (
        a.wait_running("a", "main", T),
        a.wait_running("b", "main", T),
    );

    a.write_manifest(
        "a.yaml",
        &workload_yaml("a", &image, SLEEPER, "", "memory: 48Mi"),
    );
    let pa2 = wait_for("a to be replaced", T, || {
        let c = a.container("a", "main")?;
        (c["phase"] == "Running" && c["pid"].as_u64()? != u64::from(pa))
            .then(|| c["pid"].as_u64().unwrap() as u32)
    });
    assert!(!pid_alive(pa), "old container of a still alive");
    let limit =
        fs::read_to_string(a.cgroup_file("memory", "a", "main", "memory.limit_in_bytes")).unwrap();
    assert_eq!(
        limit.trim(),
        (48u64 << 20).to_string(),
        "new limit not applied"
    );
    assert_eq!(
        a.container("a", "main").unwrap()["restarts"],
        0,
        "a replacement is not a restart"
    );
    // b was not touched: same process, no restart, across a few resyncs.
    std::thread::sleep(Duration::from_secs(3));
    let b = a.container("b", "main").unwrap();
    assert_eq!(
        (b["pid"].as_u64(), b["restarts"].as_u64()),
        (Some(u64::from(pb)), Some(0))
    );
    assert_eq!(a.wait_running("a", "main", T), pa2);
}

#[test]
fn agent_kill9_adopts_containers_and_a_power_cut_brings_them_all_back() {
    if !require_root("agent_kill9_adopts_containers_and_a_power_cut_brings_them_all_back") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("adopt");
    a.start();
    a.write_manifest(
        "web.yaml",
        &workload_yaml("web", &image, SLEEPER, "", "memory: 32Mi"),
    );
    // A two-container pod in a private network namespace (loopback only).
    let pod = format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: pod}}\nspec:\n  network: none\n  stopGracePeriod: 2s\n  containers:\n    - name: one\n      image: oci:{img}:latest\n      command: [/bin/sh, -c, \"ip -o link; while true; do sleep 1; done\"]\n    - name: two\n      image: oci:{img}:latest\n      command: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n",
        img = image.display()
    );
    a.write_manifest("pod.yaml", &pod);
    let before: Vec<u32> = [("web", "main"), ("pod", "one"), ("pod", "two")]
        .iter()
        .map(|(w, c)| a.wait_running(w, c, T))
        .collect();
    let net = |pid: u32| fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        net(before[1]),
        net(before[2]),
        "pod containers must share a network namespace"
    );
    assert_ne!(
        net(before[1]),
        fs::read_link("/proc/self/ns/net").unwrap(),
        "network: none must not be the host's"
    );

    a.kill9();
    a.start();
    let ps = a.wait_ps("a report from the new agent", T, |_| true);
    for (w, c) in [("web", "main"), ("pod", "one"), ("pod", "two")] {
        let st = a.container(w, c).unwrap();
        assert_eq!(st["phase"], "Running", "{w}/{c}: {ps}");
        assert_eq!(st["restarts"], 0, "{w}/{c} was restarted by the adoption");
    }
    let after: Vec<u32> = [("web", "main"), ("pod", "one"), ("pod", "two")]
        .iter()
        .map(|(w, c)| a.wait_running(w, c, T))
        .collect();
    assert_eq!(before, after, "adoption must keep the same processes");

    a.power_cut();
    assert!(
        before.iter().all(|p| !pid_alive(*p)),
        "power cut left processes alive"
    );
    a.start();
    let revived: Vec<u32> = [("web", "main"), ("pod", "one"), ("pod", "two")]
        .iter()
        .map(|(w, c)| a.wait_running(w, c, T))
        .collect();
    assert!(
        revived.iter().zip(&before).all(|(n, o)| n != o),
        "{revived:?} vs {before:?}: {:?}\n{}",
        a.ps(),
        a.logs()
    );
    assert_eq!(
        net(revived[1]),
        net(revived[2]),
        "shared netns after recovery"
    );
}

#[test]
fn malformed_manifest_is_reported_with_file_line_column_and_running_workloads_stay() {
    if !require_root(
        "malformed_manifest_is_reported_with_file_line_column_and_running_workloads_stay",
    ) {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("badyaml");
    a.start();
    a.write_manifest(
        "web.yaml",
        &workload_yaml("web", &image, SLEEPER, "", "memory: 32Mi"),
    );
    let pid = a.wait_running("web", "main", T);

    // Line 9, column 7: a misspelt field inside the container.
    let broken = workload_yaml("web", &image, SLEEPER, "", "memory: 32Mi")
        .replace("      image:", "      imagee:");
    a.write_manifest("web.yaml", &broken);
    let stderr = wait_for("the manifest error in ps", T, || {
        let (code, _, err) = a.cli(&["ps"]);
        (code == 0 && err.contains("imagee")).then_some(err)
    });
    let file = a.manifests.join("web.yaml");
    assert!(
        stderr.contains(&format!("{}:9:7", file.display())),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_secs(3)); // a resync or two
    let c = a.container("web", "main").unwrap();
    assert_eq!(
        (c["phase"].as_str(), c["pid"].as_u64()),
        (Some("Running"), Some(u64::from(pid)))
    );

    // Fixing the file clears the error and changes nothing else.
    a.write_manifest(
        "web.yaml",
        &workload_yaml("web", &image, SLEEPER, "", "memory: 32Mi"),
    );
    wait_for("the error to clear", T, || {
        (!a.cli(&["ps"]).2.contains("imagee")).then_some(())
    });
    assert_eq!(a.wait_running("web", "main", T), pid);
}

#[test]
fn unsafe_layers_are_refused_with_a_clear_status_and_write_nothing_outside() {
    if !require_root("unsafe_layers_are_refused_with_a_clear_status_and_write_nothing_outside") {
        return;
    }
    let mut a = TestAgent::new("unsafe");
    let outside = a.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let dotdot = oci::LayerBuilder::new()
        .add_file("ok.txt", b"fine", 0o644)
        .add_file("../../escape.txt", b"x", 0o644)
        .finish();
    let symlink = oci::LayerBuilder::new()
        .add_symlink("evil", &outside.display().to_string())
        .add_file("evil/pwned", b"x", 0o644)
        .finish();
    let cfg = serde_json::json!({"Cmd": ["/bin/sh"]});
    oci::write_layout(
        &a.dir.path().join("dotdot"),
        "latest",
        &[dotdot],
        cfg.clone(),
    )
    .unwrap();
    oci::write_layout(&a.dir.path().join("symlink"), "latest", &[symlink], cfg).unwrap();
    a.start();
    for name in ["dotdot", "symlink"] {
        a.write_manifest(
            &format!("{name}.yaml"),
            &workload_yaml(name, &a.dir.path().join(name), "true", "", "memory: 8Mi"),
        );
    }
    let ps = a.wait_all_in_phase(2, "Error", T);
    let err = |n: &str| last_error(&ps, n);
    assert!(
        err("dotdot").contains("refusing unsafe entry") && err("dotdot").contains(".."),
        "{}",
        err("dotdot")
    );
    assert!(
        err("symlink").contains("evil") && err("symlink").contains("outside the rootfs"),
        "{}",
        err("symlink")
    );
    assert!(!outside.join("pwned").exists() && !a.dir.path().join("escape.txt").exists());
    assert!(
        !a.state.join("containers/dotdot.main").exists(),
        "nothing may be created from a refused image"
    );
}

#[test]
fn a_long_stop_never_holds_up_other_workloads_or_the_status() {
    if !require_root("a_long_stop_never_holds_up_other_workloads_or_the_status") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("slowstop");
    a.start();
    // PID 1 of a container ignores SIGTERM unless it handles it: this one runs out its
    // whole 12 s grace period and is then killed by its shim.
    let slow = workload_yaml("slow", &image, SLEEPER, "", "memory: 32Mi")
        .replace("stopGracePeriod: 2s", "stopGracePeriod: 12s");
    a.write_manifest("slow.yaml", &slow);
    let pid = a.wait_running("slow", "main", T);

    let removed_at = Instant::now();
    a.remove_manifest("slow.yaml");
    a.write_manifest(
        "fresh.yaml",
        &workload_yaml("fresh", &image, SLEEPER, "", "memory: 32Mi"),
    );
    a.wait_running("fresh", "main", T);
    let fresh_after = removed_at.elapsed();
    assert!(
        fresh_after < Duration::from_secs(8),
        "the new workload waited {fresh_after:?} for the old one's grace period"
    );
    assert!(
        pid_alive(pid),
        "slow was killed before its grace period ended"
    );
    // Meanwhile the status keeps flowing and shows the old one stopping.
    a.wait_ps("slow shown as Stopping", Duration::from_secs(5), |p| {
        p["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "slow" && w["phase"] == "Stopping")
    });
    // The stop runs its course in the background: SIGKILL after the grace period.
    wait_for(
        "slow's record to disappear",
        Duration::from_secs(40),
        || (!a.state.join("workloads/slow.json").exists()).then_some(()),
    );
    assert!(!pid_alive(pid), "slow's container {pid} still alive");
    assert!(
        removed_at.elapsed() >= Duration::from_secs(12),
        "slow ended before its grace period: {:?}",
        removed_at.elapsed()
    );
}

#[test]
fn a_child_killed_by_the_oom_killer_marks_the_container_oom_killed() {
    if !require_root("a_child_killed_by_the_oom_killer_marks_the_container_oom_killed") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("oomchild");
    a.start();
    // tail (a child) is OOM-killed; the shell, PID 1, then exits with its status, 137.
    let yaml = workload_yaml(
        "oomchild",
        &image,
        "head -c 200m /dev/zero | tail",
        "  restartPolicy: Never\n",
        "memory: 32Mi",
    );
    a.write_manifest("oomchild.yaml", &yaml);
    let c = wait_for("oomchild to exit", T, || {
        a.container("oomchild", "main")
            .filter(|c| c["exit_code"].as_i64().is_some())
    });
    assert_eq!(c["exit_code"], 137, "{c}");
    assert_eq!(c["oom_killed"], true, "the cgroup counted the kill: {c}");
}
