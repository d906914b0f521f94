//! End-to-end: a real agent runs real containers from an OCI layout built from Debian's
//! busybox-static, with real cgroup limits. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::time::{Duration, Instant};

use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::{require_root, wait_for};

const T: Duration = Duration::from_secs(30);

#[test]
fn workload_runs_logs_and_shows_in_ps_with_its_limits() {
    if !require_root("workload_runs_logs_and_shows_in_ps_with_its_limits") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("basic");
    a.start();
    let t0 = Instant::now();
    let script = "echo hello from drover; while true; do sleep 1; done";
    a.write_manifest(
        "hello.yaml",
        &workload_yaml(
            "hello",
            &image,
            script,
            "",
            "memory: 32Mi, pids: 16, cpu: 500m",
        ),
    );
    let pid = a.wait_running("hello", "main", T);
    eprintln!("manifest to running: {:?}", t0.elapsed());

    let log = wait_for("log line", T, || {
        let (code, out, _) = a.cli(&["logs", "hello"]);
        (code == 0 && out.contains("hello from drover")).then_some(out)
    });
    assert!(log.starts_with("hello from drover"), "{log}");

    let limit =
        fs::read_to_string(a.cgroup_file("memory", "hello", "main", "memory.limit_in_bytes"))
            .unwrap();
    assert_eq!(limit.trim(), (32u64 << 20).to_string());
    let pids_max = fs::read_to_string(a.cgroup_file("pids", "hello", "main", "pids.max")).unwrap();
    assert_eq!(pids_max.trim(), "16");
    let quota =
        fs::read_to_string(a.cgroup_file("cpu", "hello", "main", "cpu.cfs_quota_us")).unwrap();
    assert_eq!(quota.trim(), "50000");
    let procs =
        fs::read_to_string(a.cgroup_file("memory", "hello", "main", "cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "init {pid} not in its cgroup: {procs}"
    );

    let c = a.container("hello", "main").unwrap();
    assert_eq!(c["restarts"], 0);
    assert!(c["memory_bytes"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["memory_limit_bytes"].as_u64(), Some(32 << 20));

    let (code, table, _) = a.cli(&["ps"]);
    assert_eq!(code, 0);
    let row = table
        .lines()
        .find(|l| l.starts_with("hello"))
        .unwrap_or_else(|| panic!("no row in\n{table}"));
    assert!(
        row.contains("Running") && row.contains(&pid.to_string()) && row.contains("/32.0Mi"),
        "{row}"
    );
}

#[test]
fn command_without_args_drops_the_images_cmd_as_kubernetes_does() {
    if !require_root("command_without_args_drops_the_images_cmd_as_kubernetes_does") {
        return;
    }
    // The busybox image's Cmd is ["/bin/sh"]: it must not be appended to `command`.
    let (mut a, image) = TestAgent::with_busybox("cmdonly");
    a.start();
    let manifest = format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: cmdonly}}\nspec:\n  restartPolicy: Never\n  containers:\n    - name: main\n      image: oci:{}:latest\n      command: [/bin/echo, only-this]\n",
        image.display()
    );
    a.write_manifest("cmdonly.yaml", &manifest);
    let log = wait_for("the echo's output", T, || {
        let (code, out, _) = a.cli(&["logs", "cmdonly"]);
        (code == 0 && out.contains("only-this")).then_some(out)
    });
    assert_eq!(log.trim_end(), "only-this", "the image's Cmd was appended");
}

#[test]
fn containers_get_hosts_hostname_and_resolv_conf_as_docker_gives_them() {
    if !require_root("containers_get_hosts_hostname_and_resolv_conf_as_docker_gives_them") {
        return;
    }
    // The busybox image has none of these files.
    let (mut a, image) = TestAgent::with_busybox("etcfiles");
    a.start();
    let cat =
        "[/bin/sh, -c, \"cat /etc/hostname /etc/hosts; echo ---; cat /etc/resolv.conf; echo end\"]";
    for (name, network) in [("onhost", "host"), ("isolated", "none")] {
        let manifest = format!(
            "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  network: {network}\n  containers:\n    - name: main\n      image: oci:{}:latest\n      command: {cat}\n",
            image.display()
        );
        a.write_manifest(&format!("{name}.yaml"), &manifest);
    }
    let out = |name: &str| {
        wait_for(&format!("{name}'s output"), T, || {
            let (code, out, _) = a.cli(&["logs", name]);
            (code == 0 && out.contains("end")).then_some(out)
        })
    };
    let host = out("onhost");
    let (files, resolv) = host.split_once("---\n").unwrap();
    assert!(files.starts_with("onhost\n"), "{host}");
    assert!(
        files.contains("127.0.0.1\tlocalhost") && files.contains("\tonhost"),
        "{host}"
    );
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(
        resolv.trim_end_matches("end\n"),
        host_resolv,
        "the host's resolvers"
    );
    let none = out("isolated");
    let (files, resolv) = none.split_once("---\n").unwrap();
    assert!(files.starts_with("isolated\n"), "{none}");
    assert_eq!(resolv, "end\n", "no resolvers without a network: {none}");
}
