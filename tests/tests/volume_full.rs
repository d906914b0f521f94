//! End-to-end: a workload fills the state disk through its volume (a small tmpfs as
//! `state_dir`). What runs keeps running, a container that exits is started again, a new
//! workload still starts, and `ps` says the disk is low and which volume holds the space.
//! Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::tmpfs::Tmpfs;
use drover_tests::{oci, require_root, wait_for};

const T: Duration = Duration::from_secs(20);

/// A workload with volume `data` at `/data` running `script`.
fn with_volume(name: &str, image: &Path, script: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  stopGracePeriod: 1s\n  volumes: [{{name: data}}]\n  containers:\n    - name: main\n      image: oci:{}:latest\n      command: [/bin/sh, -c, {script:?}]\n      mounts: [{{volume: data, mountPath: /data}}]\n",
        image.display()
    )
}

#[test]
fn a_volume_that_fills_the_disk_blocks_no_other_workload() {
    if !require_root("a_volume_that_fills_the_disk_blocks_no_other_workload") {
        return;
    }
    let mut a = TestAgent::new("volfull");
    let image = a.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    a.append_config("[images]\nmin_free_disk = \"1Mi\"\n");
    let disk = Tmpfs::mount(&a.state, "24m");
    a.start();
    let sleeper = "while true; do sleep 1; done";
    a.write_manifest(
        "keep.yaml",
        &workload_yaml("keep", &image, sleeper, "", "memory: 32Mi"),
    );
    a.write_manifest(
        "flap.yaml",
        &workload_yaml("flap", &image, sleeper, "", "memory: 32Mi"),
    );
    let keep = a.wait_running("keep", "main", T);
    let flap = a.wait_running("flap", "main", T);

    // The filler writes into its volume until the disk is full (to the last page), then
    // idles.
    let fill = "dd if=/dev/zero of=/data/big bs=64k; dd if=/dev/zero of=/data/rest bs=4k; \
                exec sleep 3600";
    a.write_manifest("filler.yaml", &with_volume("filler", &image, fill));
    a.wait_running("filler", "main", T);
    wait_for("the disk full", T, || {
        (disk.free_bytes() == 0).then_some(())
    });

    // A container that exits (restartPolicy Always) is started again.
    // SAFETY: plain kill(2) of the container's init, which this test's agent started.
    unsafe { libc::kill(flap as i32, libc::SIGKILL) };
    let again = wait_for("flap started again", T, || {
        a.running_pid("flap", "main").filter(|p| *p != flap)
    });
    assert_ne!(again, flap);

    // A workload added now starts too.
    a.write_manifest(
        "late.yaml",
        &workload_yaml("late", &image, sleeper, "", "memory: 32Mi"),
    );
    a.wait_running("late", "main", T);
    assert_eq!(
        a.running_pid("keep", "main"),
        Some(keep),
        "keep was restarted"
    );

    // The status says the disk is low, and which volume holds the space.
    let ps = a.wait_ps("low disk reported", T, |p| {
        p["capacity"]["low_disk"] == true
    });
    let filler = ps["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "filler")
        .unwrap()
        .clone();
    let note = filler["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        note.contains("volume data") && note.contains("MiB"),
        "the hub's status does not name the volume: {filler}"
    );
    let (_, _, err) = a.cli(&["ps"]);
    assert!(
        err.contains("filler/data") && err.contains("MiB"),
        "ps does not name the volume using the disk: {err}"
    );

    // `late` was started while its record could not be written to the full disk: an
    // agent killed now must find it on restart (adopt it, not start it a second time).
    let late = a.running_pid("late", "main").unwrap();
    a.kill9();
    a.start();
    a.wait_ps("a report from the restarted agent", T, |_| true);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.running_pid("late", "main"),
        Some(late),
        "late was killed and started again: {}",
        a.logs()
    );
    assert_eq!(a.running_pid("keep", "main"), Some(keep));

    // Clean up inside the tmpfs before it goes.
    for m in ["keep.yaml", "flap.yaml", "filler.yaml", "late.yaml"] {
        a.remove_manifest(m);
    }
    wait_for("all removed", T, || {
        std::fs::read_dir(a.state.join("workloads"))
            .is_ok_and(|mut d| d.next().is_none())
            .then_some(())
    });
    a.stop();
}
