//! End-to-end: liveness, readiness and startup probes of each kind (exec, httpGet,
//! tcpSocket) against real busybox containers run by a real agent. Probes run every
//! second so that the whole file stays short; tests run in parallel on free ports.
//! Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_tests::agent::TestAgent;
use drover_tests::{require_root, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn agent_with_busybox(test: &str) -> (TestAgent, PathBuf) {
    let (mut a, image) = TestAgent::with_busybox(test);
    a.start();
    (a, image)
}

/// A port nothing listens on now (on the host).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One busybox container `main` running `script`, with the probe lines given (YAML at
/// the container's indentation), e.g. `livenessProbe: {tcpSocket: {port: 80}}`.
fn manifest(name: &str, image: &Path, script: &str, network: &str, probes: &[&str]) -> String {
    let mut y = format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  \
         restartPolicy: Always\n  network: {network}\n  stopGracePeriod: 1s\n  containers:\n    \
         - name: main\n      image: oci:{}:latest\n      command: [/bin/sh, -c, {script:?}]\n",
        image.display()
    );
    for p in probes {
        y.push_str(&format!("      {p}\n"));
    }
    y
}

/// busybox httpd on `port` serving `/tmp/www` (which holds `ok`).
fn httpd(port: u16) -> String {
    format!("mkdir -p /tmp/www && echo ok > /tmp/www/ok && exec httpd -f -p {port} -h /tmp/www")
}

fn field<'a>(c: &'a Value, k: &str) -> &'a Value {
    &c[k]
}

/// Waits until `main` of `wl` satisfies `pred`; returns its status.
fn wait_main(a: &TestAgent, wl: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, T, || a.container(wl, "main").filter(|c| pred(c)))
}

#[test]
fn each_probe_kind_keeps_a_healthy_container_healthy_and_ready() {
    if !require_root("each_probe_kind_keeps_a_healthy_container_healthy_and_ready") {
        return;
    }
    let (a, image) = agent_with_busybox("probeok");
    let port = free_port();
    let probes = [
        format!("livenessProbe: {{httpGet: {{path: /ok, port: {port}, httpHeaders: [{{name: X-Probe, value: drover}}]}}, periodSeconds: 1}}"),
        format!("readinessProbe: {{tcpSocket: {{port: {port}}}, periodSeconds: 1}}"),
        "startupProbe: {exec: {command: [test, -f, /tmp/www/ok]}, periodSeconds: 1, failureThreshold: 10}".to_owned(),
    ];
    let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
    a.write_manifest(
        "web.yaml",
        &manifest("web", &image, &httpd(port), "host", &probes),
    );
    let c = wait_main(&a, "web", "web healthy and ready", |c| {
        c["health"] == "Healthy" && c["ready"] == true
    });
    assert_eq!(field(&c, "probe_failures"), 0, "{c}");
    // Several periods later: still healthy, never restarted.
    std::thread::sleep(Duration::from_secs(3));
    let c = a.container("web", "main").unwrap();
    assert_eq!(
        (&c["health"], &c["ready"], &c["restarts"]),
        (&"Healthy".into(), &true.into(), &0.into()),
        "{c}"
    );
    let (_, table, _) = a.cli(&["ps"]);
    assert!(
        table.contains("READY") && table.contains("healthy"),
        "{table}"
    );
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_and_says_why() {
    if !require_root("a_failing_liveness_probe_restarts_the_container_and_says_why") {
        return;
    }
    let (a, image) = agent_with_busybox("probelive");
    let port = free_port();
    let probe = format!(
        "livenessProbe: {{httpGet: {{path: /missing, port: {port}}}, periodSeconds: 1, failureThreshold: 2}}"
    );
    a.write_manifest(
        "web.yaml",
        &manifest("web", &image, &httpd(port), "host", &[&probe]),
    );
    let c = wait_main(&a, "web", "a liveness restart", |c| {
        c["restarts"].as_u64() >= Some(1) && c["phase"] == "Running"
    });
    let ps = a.ps().unwrap();
    let why = drover_tests::agent::last_error(&ps, "web");
    assert!(
        why.contains("restarted: liveness probe failed 2 times: HTTP 404"),
        "{why}\n{c}"
    );
}

#[test]
fn under_on_failure_a_liveness_kill_restarts_even_a_command_that_exits_0_on_sigterm() {
    if !require_root(
        "under_on_failure_a_liveness_kill_restarts_even_a_command_that_exits_0_on_sigterm",
    ) {
        return;
    }
    let (a, image) = agent_with_busybox("probeonfail");
    // Exits 0 on SIGTERM (saying so); its liveness probe never passes.
    let script = "trap 'echo term-exit-0; exit 0' TERM; while true; do sleep 1; done";
    let probe = "livenessProbe: {exec: {command: [false]}, periodSeconds: 1, failureThreshold: 2}";
    let y = manifest("job", &image, script, "host", &[probe])
        .replace("restartPolicy: Always", "restartPolicy: OnFailure")
        .replace("stopGracePeriod: 1s", "stopGracePeriod: 10s");
    a.write_manifest("job.yaml", &y);
    let c = wait_main(&a, "job", "a restart after the liveness kill", |c| {
        c["restarts"].as_u64() >= Some(1) && c["phase"] == "Running"
    });
    let (code, logs, err) = a.cli(&["logs", "job"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        logs.contains("term-exit-0"),
        "the killed run ended by exiting 0: {logs}\n{c}"
    );
}

#[test]
fn readiness_flips_ready_without_a_restart() {
    if !require_root("readiness_flips_ready_without_a_restart") {
        return;
    }
    let (a, image) = agent_with_busybox("proberead");
    let script = "touch /tmp/ready; sleep 4; rm /tmp/ready; exec sleep 3600";
    let probe = "readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1, failureThreshold: 1}";
    a.write_manifest(
        "app.yaml",
        &manifest("app", &image, script, "host", &[probe]),
    );
    wait_main(&a, "app", "app ready", |c| c["ready"] == true);
    let c = wait_main(&a, "app", "app not ready", |c| c["ready"] == false);
    assert_eq!(c["phase"], "Running", "{c}");
    assert_eq!(c["health"], "Unhealthy", "{c}");
    assert_eq!(c["restarts"], 0, "readiness never restarts: {c}");
    assert!(
        c["probe_message"]
            .as_str()
            .is_some_and(|m| m.contains("readiness probe: exit code 1")),
        "{c}"
    );
    // Every exec probe run (one a second, 5+ by now) leaves no file behind in the
    // container's libcontainer state (libcontainer's tenant builder leaves a socket).
    let state = a.run_dir().join("runtime").join("app.main");
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tenant-notify"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_startup_probe_holds_liveness_off_until_it_succeeds() {
    if !require_root("a_startup_probe_holds_liveness_off_until_it_succeeds") {
        return;
    }
    let (a, image) = agent_with_busybox("probestart");
    // Liveness would fail at once (threshold 1) until the file exists after 4 s.
    let script = "sleep 4; touch /tmp/started; exec sleep 3600";
    let probes = [
        "livenessProbe: {exec: {command: [test, -f, /tmp/started]}, periodSeconds: 1, failureThreshold: 1}",
        "startupProbe: {exec: {command: [test, -f, /tmp/started]}, periodSeconds: 1, failureThreshold: 30}",
    ];
    a.write_manifest(
        "slow.yaml",
        &manifest("slow", &image, script, "host", &probes),
    );
    let c = wait_main(&a, "slow", "slow starting", |c| c["phase"] == "Running");
    assert_eq!(
        (&c["health"], &c["ready"]),
        (&"Starting".into(), &false.into()),
        "{c}"
    );
    let c = wait_main(&a, "slow", "slow healthy", |c| c["health"] == "Healthy");
    assert_eq!(
        c["restarts"], 0,
        "liveness never ran before startup succeeded: {c}"
    );
    assert_eq!(c["ready"], true, "{c}");
}

#[test]
fn a_hanging_exec_probe_is_killed_at_its_timeout() {
    if !require_root("a_hanging_exec_probe_is_killed_at_its_timeout") {
        return;
    }
    let (a, image) = agent_with_busybox("probehang");
    let probe = "readinessProbe: {exec: {command: [sleep, '100']}, timeoutSeconds: 1, periodSeconds: 1, failureThreshold: 2}";
    a.write_manifest(
        "hang.yaml",
        &manifest("hang", &image, "exec sleep 3600", "host", &[probe]),
    );
    let started = Instant::now();
    let c = wait_main(&a, "hang", "hang failing its probe twice", |c| {
        c["probe_failures"].as_u64() >= Some(2)
    });
    assert!(started.elapsed() < Duration::from_secs(10), "{c}");
    assert_eq!(
        c["probe_message"], "readiness probe: timed out after 1s",
        "{c}"
    );
    assert_eq!(
        (&c["ready"], &c["restarts"]),
        (&false.into(), &0.into()),
        "{c}"
    );
    // Killed, not piling up: at most the run in flight is left.
    std::thread::sleep(Duration::from_secs(2));
    let sleepers = a
        .cgroup_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x00100\x00")
        })
        .count();
    assert!(sleepers <= 1, "{sleepers} probe processes alive");
}

#[test]
fn a_probe_on_network_none_reaches_the_pods_own_port() {
    if !require_root("a_probe_on_network_none_reaches_the_pods_own_port") {
        return;
    }
    let (a, image) = agent_with_busybox("probenetns");
    // Free on the host: only the pod's own httpd can answer.
    let port = free_port();
    let probes = [
        format!("livenessProbe: {{httpGet: {{path: /ok, port: {port}}}, periodSeconds: 1}}"),
        format!("readinessProbe: {{tcpSocket: {{port: {port}}}, periodSeconds: 1}}"),
    ];
    let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
    a.write_manifest(
        "iso.yaml",
        &manifest("iso", &image, &httpd(port), "none", &probes),
    );
    let c = wait_main(&a, "iso", "iso healthy and ready", |c| {
        c["health"] == "Healthy" && c["ready"] == true
    });
    assert_eq!(c["restarts"], 0, "{c}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the pod's port must not be the host's"
    );
}
