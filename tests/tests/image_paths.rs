//! End-to-end: paths an image names are resolved inside the image, never through the
//! host's view: a missing working directory is created in the rootfs (as runc and crun
//! do), one that is a file is an error naming it; `/etc/passwd` that is a symlink to a
//! host file or a FIFO neither leaks the host's users nor hangs the agent. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::{oci, require_root, wait_for};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn manifest(name: &str, image: &std::path::Path, extra: &str, command: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  containers:\n    - name: main\n      image: oci:{}:latest\n      command: {command}\n{extra}",
        image.display()
    )
}

/// The workload's status from `ps -o json` once `pred` holds for it.
fn wait_workload(a: &TestAgent, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let ps = a.wait_ps(what, T, |p| {
        p["workloads"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["name"] == name && pred(w)))
    });
    ps["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap()
        .clone()
}

#[test]
fn a_missing_working_dir_is_created_and_one_that_is_a_file_is_named() {
    if !require_root("a_missing_working_dir_is_created_and_one_that_is_a_file_is_named") {
        return;
    }
    let mut a = TestAgent::new("workdir");
    let image = a.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    a.start();
    a.write_manifest(
        "deep.yaml",
        &manifest(
            "deep",
            &image,
            "      workingDir: /srv/new/deep\n",
            "[/bin/sh, -c, pwd]",
        ),
    );
    let log = wait_for("pwd's output", T, || {
        let (code, out, _) = a.cli(&["logs", "deep"]);
        (code == 0 && !out.is_empty()).then_some(out)
    });
    assert_eq!(log.trim_end(), "/srv/new/deep");

    a.write_manifest(
        "file.yaml",
        &manifest(
            "file",
            &image,
            "      workingDir: /bin/busybox\n",
            "[/bin/true]",
        ),
    );
    let w = wait_workload(&a, "file", "file's start failure", |w| {
        w["phase"] == "Error"
    });
    let err = w["last_error"].as_str().unwrap_or("");
    assert!(
        err.contains("/bin/busybox"),
        "the message names the path: {err}"
    );
    assert!(err.contains("not retried"), "{err}");
}

#[test]
fn users_come_from_the_image_only_and_a_fifo_passwd_hangs_nothing() {
    if !require_root("users_come_from_the_image_only_and_a_fifo_passwd_hangs_nothing") {
        return;
    }
    let mut a = TestAgent::new("imgusers");
    let host_passwd = a.dir.path().join("host-passwd");
    std::fs::write(&host_passwd, "ghost:x:4242:4242::/home/ghost:/bin/sh\n").unwrap();
    let base = oci::busybox_layer().unwrap();
    let link = oci::LayerBuilder::new()
        .add_dir("etc", 0o755)
        .add_symlink("etc/passwd", &host_passwd.display().to_string())
        .finish();
    let ghost = a.dir.path().join("ghost");
    let cfg = json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "User": "ghost"});
    oci::write_layout(&ghost, "latest", &[base.clone(), link], cfg).unwrap();
    let fifo_layer = oci::LayerBuilder::new()
        .add_dir("etc", 0o755)
        .add_fifo("etc/passwd", 0o644)
        .finish();
    let fifo = a.dir.path().join("fifo");
    let cfg = json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]});
    oci::write_layout(&fifo, "latest", &[base, fifo_layer], cfg).unwrap();
    let plain = a.dir.path().join("busybox");
    oci::busybox_layout(&plain, "latest").unwrap();
    a.start();

    let sleeper = "[/bin/sh, -c, \"while true; do sleep 1; done\"]";
    a.write_manifest("ghost.yaml", &manifest("ghost", &ghost, "", sleeper));
    a.write_manifest("fifo.yaml", &manifest("fifo", &fifo, "", sleeper));
    a.write_manifest("after.yaml", &manifest("after", &plain, "", sleeper));
    // The FIFO neither blocks this start nor the others.
    a.wait_running("fifo", "main", T);
    a.wait_running("after", "main", T);
    let w = wait_workload(&a, "ghost", "ghost's start failure", |w| {
        w["phase"] == "Error"
    });
    let err = w["last_error"].as_str().unwrap_or("");
    assert!(
        err.contains("ghost"),
        "the host's user must not be found: {err}"
    );
}

/// The files the agent bind-mounts on `/etc` (hosts, hostname, resolv.conf) may be, in an
/// image, a dangling symlink (systemd's `resolv.conf -> ../run/systemd/resolve/…`), a
/// symlink to a host path, or a FIFO: the container still starts and sees the agent's
/// files there, and nothing outside the rootfs is touched.
#[test]
fn etc_files_that_are_links_or_fifos_in_the_image_still_get_the_agents_files() {
    if !require_root("etc_files_that_are_links_or_fifos_in_the_image_still_get_the_agents_files") {
        return;
    }
    let mut a = TestAgent::new("etclinks");
    let host_file = a.dir.path().join("host-hostname");
    std::fs::write(&host_file, "host-secret\n").unwrap();
    let base = oci::busybox_layer().unwrap();
    let etc = oci::LayerBuilder::new()
        .add_dir("etc", 0o755)
        .add_symlink("etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
        .add_symlink("etc/hostname", &host_file.display().to_string())
        .add_fifo("etc/hosts", 0o644)
        .finish();
    let image = a.dir.path().join("etclinks");
    let cfg = json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]});
    oci::write_layout(&image, "latest", &[base, etc], cfg).unwrap();
    a.start();
    let show =
        "[/bin/sh, -c, \"cat /etc/hostname /etc/hosts; echo resolv=$(wc -c < /etc/resolv.conf)\"]";
    a.write_manifest("etc.yaml", &manifest("etcwl", &image, "", show));
    let log = wait_for("the container's /etc files", T, || {
        let (code, out, _) = a.cli(&["logs", "etcwl"]);
        (code == 0 && out.contains("resolv=")).then_some(out)
    });
    assert!(log.starts_with("etcwl\n"), "hostname is the agent's: {log}");
    assert!(
        log.contains("127.0.0.1\tlocalhost"),
        "hosts is the agent's: {log}"
    );
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    assert!(
        log.contains(&format!("resolv={}", host_resolv.len())),
        "resolv.conf is the host's (host network): {log}"
    );
    assert_eq!(
        std::fs::read_to_string(&host_file).unwrap(),
        "host-secret\n"
    );
}
