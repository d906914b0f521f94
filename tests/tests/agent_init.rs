//! End-to-end: `init: true` runs a minimal init as the container's PID 1 (as
//! `docker run --init`): orphans are reaped instead of staying zombies, signals reach the
//! command, and a death by signal N reads exit code 128 + N. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::{require_root, wait_for};

const T: Duration = Duration::from_secs(30);

/// A workload of one busybox container running `sh -c script`, with `init` as given.
fn manifest(name: &str, image: &Path, script: &str, init: bool, restart: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  \
         restartPolicy: {restart}\n  stopGracePeriod: 30s\n  containers:\n    - name: main\n      \
         image: oci:{}:latest\n      init: {init}\n      command: [/bin/sh, -c, {script:?}]\n",
        image.display()
    )
}

/// Host pids of the zombie children of `parent`.
fn zombie_children(parent: u32) -> Vec<u32> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if state == "Z" && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Sends `sig` to host process `pid`.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

#[test]
fn with_init_orphans_are_reaped_without_it_they_stay_zombies() {
    if !require_root("with_init_orphans_are_reaped_without_it_they_stay_zombies") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("initreap");
    a.start();
    // A background child whose parent (the subshell) exits at once: it is re-parented to
    // PID 1, which is `sleep` after the exec, and never reaped unless PID 1 is an init.
    let script = "(sleep 1 &); exec sleep 3600";
    a.write_manifest(
        "plain.yaml",
        &manifest("plain", &image, script, false, "Always"),
    );
    a.write_manifest(
        "inited.yaml",
        &manifest("inited", &image, script, true, "Always"),
    );
    let plain = a.wait_running("plain", "main", T);
    let inited = a.wait_running("inited", "main", T);
    let zombies = wait_for("the orphan of `plain` to end as a zombie", T, || {
        Some(zombie_children(plain)).filter(|z| !z.is_empty())
    });
    assert_eq!(zombies.len(), 1, "{zombies:?}");
    // Both orphans ended at about the same time; give the init a moment, then look.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        zombie_children(inited),
        Vec::<u32>::new(),
        "init reaped its orphan"
    );
    // PID 1 is the init and the command is its child.
    let children = std::fs::read_to_string(format!("/proc/{inited}/task/{inited}/children"))
        .unwrap_or_default();
    assert_eq!(children.split_whitespace().count(), 1, "{children:?}");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", children.trim())).unwrap();
    assert_eq!(comm.trim(), "sleep");
}

#[test]
fn with_init_signals_reach_the_command_and_a_death_by_signal_n_reads_128_plus_n() {
    if !require_root("with_init_signals_reach_the_command_and_a_death_by_signal_n_reads_128_plus_n")
    {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("initsig");
    a.start();
    // The shell signals itself. As PID 1 (no init) the kernel drops a signal PID 1 has no
    // handler for, so it carries on and exits 0; under an init it dies of it: 128 + 10.
    let script = "kill -USR1 $$; sleep 1; exit 0";
    a.write_manifest(
        "plain.yaml",
        &manifest("plain", &image, script, false, "Never"),
    );
    a.write_manifest(
        "inited.yaml",
        &manifest("inited", &image, script, true, "Never"),
    );
    let exit_of = |wl: &str| {
        wait_for(&format!("{wl} to exit"), T, || {
            a.container(wl, "main")
                .and_then(|c| c["exit_code"].as_i64())
        })
    };
    assert_eq!(exit_of("plain"), 0, "PID 1 without a handler ignores USR1");
    assert_eq!(
        exit_of("inited"),
        128 + 10,
        "killed by SIGUSR1 under the init"
    );

    // A stop's SIGTERM goes to PID 1 (sent here as the shim sends it): the init forwards
    // it and `sleep` — which as PID 1 would ignore it — dies of it: 128 + 15.
    a.write_manifest(
        "stopped.yaml",
        &manifest("stopped", &image, "exec sleep 3600", true, "Never"),
    );
    let pid = a.wait_running("stopped", "main", T);
    signal(pid, libc::SIGTERM);
    // Without forwarding nothing would end it: the agent sends no stop here.
    assert_eq!(exit_of("stopped"), 128 + 15);
    // And a SIGKILL from the host kills the init itself: 128 + 9.
    a.write_manifest(
        "killed.yaml",
        &manifest("killed", &image, "exec sleep 3600", true, "Never"),
    );
    let pid = a.wait_running("killed", "main", T);
    signal(pid, libc::SIGKILL);
    assert_eq!(exit_of("killed"), 128 + 9);
}
