//! End-to-end: an agent whose state folder is on a full disk (a small tmpfs, filled)
//! starts anyway, keeps running what runs and says why; once space is freed it records
//! again. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::tmpfs::Tmpfs;
use drover_tests::{oci, pid_alive, require_root, wait_for};

const T: Duration = Duration::from_secs(30);

#[test]
fn on_a_full_disk_the_agent_starts_keeps_what_runs_and_recovers() {
    if !require_root("on_a_full_disk_the_agent_starts_keeps_what_runs_and_recovers") {
        return;
    }
    let mut a = TestAgent::new("diskfull");
    let image = a.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    // A 24 MiB disk: the image-store floor must sit below it, or nothing is extracted.
    a.append_config("[images]\nmin_free_disk = \"1Mi\"\n");
    let disk = Tmpfs::mount(&a.state, "24m");
    a.start();
    let sleeper = "echo up; while true; do sleep 1; done";
    a.write_manifest(
        "keep.yaml",
        &workload_yaml("keep", &image, sleeper, "", "memory: 32Mi"),
    );
    let pid = a.wait_running("keep", "main", T);

    a.stop();
    let fill = disk.fill("fill");
    a.start();
    std::thread::sleep(Duration::from_secs(4)); // preflight, adoption, a few passes
    let agent = a.pid().unwrap();
    assert!(
        pid_alive(agent),
        "the agent refused to start on a full disk:\n{}",
        a.logs()
    );
    assert!(pid_alive(pid), "the workload was stopped");
    assert!(
        a.logs().contains("full disk"),
        "the log does not say why:\n{}",
        a.logs()
    );
    let (_, _, err) = a.cli(&["ps"]);
    assert!(err.contains("bytes free"), "ps does not warn: {err}");

    std::fs::remove_file(fill).unwrap();
    let now = a.wait_running("keep", "main", T);
    assert_eq!(now, pid, "adopted, not restarted");

    // Clean up inside the tmpfs before it goes.
    a.remove_manifest("keep.yaml");
    wait_for("keep removed", T, || {
        (!a.state.join("workloads/keep.json").exists()).then_some(())
    });
    a.stop();
    assert!(
        !a.state
            .join(".preflight-".to_owned() + &agent.to_string())
            .exists()
    );
}
