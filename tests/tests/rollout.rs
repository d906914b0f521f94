//! End-to-end: health-gated rollouts with a real hub (`drover-hub serve`, embedded
//! broker) and five real agents, each its own process with its own state folder, running
//! real busybox containers. A canary first, then batches of two; a revision whose
//! readiness probe never passes stops at the canary and is rolled back; an agent that is
//! offline during a rollout does not block it and gets the revision when it returns.
//!
//! Every revision's command leaves `ran-<tag>` in the workload's named volume, which lives
//! in the agent's own state folder (`volumes/<workload>/data/`) and is kept across
//! updates: whether a device ever ran a revision is on its disk, not inferred from a
//! sampled `ps`. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::hub::TestHub;
use drover_tests::{require_root, wait_for};
use serde_json::{Value, json};

/// Generous: several agents, containers and a hub share two busy cores.
const T: Duration = Duration::from_secs(90);
const WL: &str = "app";

/// A RollingUpdate Deployment `app` for devices with `pool`: canary 1, then batches of 2,
/// healthy after 1 s ready, failed when not healthy within 15 s. The container writes
/// `/data/ran-<tag>` and, when `good`, the file its readiness probe looks for.
fn deployment(image: &Path, pool: &str, tag: &str, good: bool) -> String {
    let ready = if good { "touch /tmp/ready; " } else { "" };
    let script = format!(
        "touch /data/ran-{tag}; echo revision-{tag} started; mkdir -p /tmp; {ready}\
         while true; do sleep 1; done"
    );
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {WL}}}\nspec:\n  \
         selector: {{matchLabels: {{pool: {pool}}}}}\n  minReadySeconds: 1\n  strategy:\n    \
         type: RollingUpdate\n    canary: 1\n    batchSize: 2\n    healthTimeout: 15s\n    \
         failureThreshold: 1\n  template:\n    spec:\n      stopGracePeriod: 1s\n      \
         volumes: [{{name: data}}]\n      containers:\n        - name: main\n          \
         image: oci:{}:latest\n          command: [/bin/sh, -c, {script:?}]\n          \
         mounts: [{{volume: data, mountPath: /data}}]\n          \
         readinessProbe: {{exec: {{command: [test, -f, /tmp/ready]}}, periodSeconds: 1}}\n",
        image.display()
    )
}

/// `prefix-1` … `prefix-n`, registered with `pool=<prefix>`, connected and started.
fn fleet(hub: &TestHub, prefix: &str, n: usize) -> Vec<(String, TestAgent)> {
    let agents: Vec<(String, TestAgent)> = (1..=n)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            let mut a = TestAgent::new(&name);
            a.connect_to_hub(&hub.device_add(&name, &[&format!("pool={prefix}")]));
            a.start();
            (name, a)
        })
        .collect();
    wait_online(hub, &agents, true);
    agents
}

fn wait_online(hub: &TestHub, agents: &[(String, TestAgent)], online: bool) {
    wait_for(&format!("devices online == {online}"), T, || {
        let d = hub.devices();
        agents
            .iter()
            .all(|(n, _)| device(&d, n)["online"] == online)
            .then_some(())
    });
}

fn device<'a>(devices: &'a Value, name: &str) -> &'a Value {
    devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .unwrap_or(&Value::Null)
}

fn busybox(dir: &Path) -> PathBuf {
    let image = dir.join("busybox");
    drover_tests::oci::busybox_layout(&image, "latest").expect("busybox layout");
    image
}

/// `app` as the agent reports it: running revision `rev` and ready; its container's
/// (pid, started_at_ms).
fn running_ready(a: &TestAgent, rev: u64) -> Option<(u64, u64)> {
    let ps = a.ps()?;
    let w = ps["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == WL)?;
    let c = &w["containers"][0];
    (w["revision"] == rev && w["phase"] == "Running" && c["ready"] == true)
        .then(|| Some((c["pid"].as_u64()?, c["started_at_ms"].as_u64()?)))
        .flatten()
}

fn wait_ready(name: &str, a: &TestAgent, rev: u64) -> (u64, u64) {
    wait_for(&format!("{name} running revision {rev}, ready"), T, || {
        running_ready(a, rev)
    })
}

/// True when the revision tagged `tag` ever started on `a` (its file in the volume).
fn ran(a: &TestAgent, tag: &str) -> bool {
    a.state
        .join("volumes")
        .join(WL)
        .join("data")
        .join(format!("ran-{tag}"))
        .exists()
}

/// Writes `yaml` into the hub's folder and runs `apply -f FILE --wait --timeout 90s`:
/// (exit code, stdout and stderr interleaved as a terminal would show them).
fn apply_wait(hub: &TestHub, file: &str, yaml: &str) -> (i32, String) {
    let path = hub.dir.path().join(file);
    std::fs::write(&path, yaml).unwrap();
    let out_path = hub.dir.path().join(format!("{file}.wait.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    let status = hub
        .cli_command()
        .args(["apply", "-f"])
        .arg(&path)
        .args(["--wait", "--timeout", "90s"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&out_path).unwrap();
    (status.code().unwrap_or(-1), text)
}

fn rollout_status(hub: &TestHub) -> Value {
    let (code, out, err) = hub.cli(&["rollout", "status", WL, "-o", "json"]);
    assert_eq!(code, 0, "rollout status: {err}");
    serde_json::from_str(&out).unwrap()
}

/// The devices of each batch the hub started for revision `rev`, from its events:
/// `revision 2 to first batch: a-1`, `revision 2 to batch 1: a-2, a-3`, ….
fn batches(hub: &TestHub, rev: u64) -> Vec<Vec<String>> {
    let (code, out, err) = hub.cli(&["describe", "deployment", WL, "-o", "json"]);
    assert_eq!(code, 0, "describe: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let prefix = format!("revision {rev} to ");
    let mut events: Vec<(u64, String)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "RolloutBatch")
        .filter_map(|e| {
            let m = e["message"].as_str()?.strip_prefix(&prefix)?;
            Some((e["ts_ms"].as_u64()?, m.split_once(": ")?.1.to_owned()))
        })
        .collect();
    events.sort();
    events
        .into_iter()
        .map(|(_, list)| list.split(", ").map(str::to_owned).collect())
        .collect()
}

/// `started[i]`: when device `i` started the new revision. Each batch started only
/// after every device of the one before had run for minReadySeconds (1 s) — same clock.
fn assert_each_batch_waited(started: &[u64], batches: &[&[usize]]) {
    for pair in batches.windows(2) {
        let prev = pair[0].iter().map(|&i| started[i]).max().unwrap();
        for &i in pair[1] {
            assert!(
                started[i] >= prev + 1000,
                "device {i} started the revision at {} ms, before the previous batch \
                 (started by {prev} ms) was ready for minReadySeconds",
                started[i]
            );
        }
    }
}

/// Prints what a user sees of a failing rollout: `apply --wait`, `rollout status` and
/// `rollout history` (the closing note quotes it).
fn print_transcript(hub: &TestHub, code: i32, apply_out: &str) {
    let status = hub.cli(&["rollout", "status", WL]);
    let history = hub.cli(&["rollout", "history", WL]);
    eprintln!(
        "===== transcript of a failing rollout =====\n\
         $ drover-hub apply -f app.yaml --wait --timeout 90s\n{apply_out}[exit status {code}]\n\
         $ drover-hub rollout status {WL}\n{}{}[exit status {}]\n\
         $ drover-hub rollout history {WL}\n{}{}[exit status {}]\n\
         ===== end of transcript =====",
        status.1, status.2, status.0, history.1, history.2, history.0
    );
}

/// The hub shows the rollout 2 → 3 RolledBack, failed on `canary` alone, with a reason
/// naming the device and the probe; every device stayed online.
fn assert_rolled_back_at(hub: &TestHub, canary: &str) {
    let st = rollout_status(hub);
    let r = &st["rollout"];
    let reason = r["reason"].as_str().unwrap_or_default();
    let got = [
        &r["from"],
        &r["to"],
        &r["phase"],
        &r["updated"],
        &r["failed"],
    ];
    assert_eq!(
        got,
        [
            &json!(2),
            &json!(3),
            &json!("RolledBack"),
            &json!(1),
            &json!(1)
        ],
        "{st}"
    );
    assert!(
        reason.contains(canary) && reason.contains("readiness"),
        "the reason names the canary and the probe: {st}"
    );
    let failed: Vec<&str> = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["state"] == "Failed")
        .filter_map(|d| d["device"].as_str())
        .collect();
    assert_eq!(failed, [canary], "{st}");
    let offline: Vec<&Value> = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["online"] != true)
        .collect();
    assert!(offline.is_empty(), "every device stays online: {st}");
    let (code, describe, _) = hub.cli(&["describe", "deployment", WL]);
    assert!(code == 0 && describe.contains("RolledBack:"), "{describe}");
}

#[test]
fn a_good_revision_goes_canary_first_then_in_batches_and_a_bad_one_stops_at_the_canary() {
    if !require_root(
        "a_good_revision_goes_canary_first_then_in_batches_and_a_bad_one_stops_at_the_canary",
    ) {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = busybox(hub.dir.path());
    let agents = fleet(&hub, "ro", 5);

    // Revision 1 is the first: every device gets it at once.
    let (code, _, err) = hub.apply("app.yaml", &deployment(&image, "ro", "v1", true));
    assert_eq!(code, 0, "apply v1: {err}");
    for (n, a) in &agents {
        wait_ready(n, a, 1);
    }

    // Revision 2 (good): the canary, then two batches of two, each started only once the
    // previous batch was ready for minReadySeconds.
    let (code, out) = apply_wait(&hub, "app.yaml", &deployment(&image, "ro", "v2", true));
    assert_eq!(code, 0, "apply --wait of a good revision:\n{out}");
    assert!(out.contains("complete"), "{out}");
    let want = vec![vec!["ro-1"], vec!["ro-2", "ro-3"], vec!["ro-4", "ro-5"]];
    assert_eq!(batches(&hub, 2), want);
    let v2: Vec<(u64, u64)> = agents.iter().map(|(n, a)| wait_ready(n, a, 2)).collect();
    let started: Vec<u64> = v2.iter().map(|(_, t)| *t).collect();
    assert_each_batch_waited(&started, &[&[0], &[1, 2], &[3, 4]]);
    let st = rollout_status(&hub);
    let r = &st["rollout"];
    assert_eq!(
        (&r["phase"], &r["updated"], &r["healthy"], &r["failed"]),
        (&"Complete".into(), &5.into(), &5.into(), &0.into()),
        "{st}"
    );

    // Revision 3 (bad): its readiness probe never passes. The canary gets it, is not
    // healthy within healthTimeout, and is rolled back; no other device ever runs it.
    let yaml = deployment(&image, "ro", "v3-bad", false);
    let (code, out) = apply_wait(&hub, "app.yaml", &yaml);
    print_transcript(&hub, code, &out);
    assert_eq!(
        code, 4,
        "apply --wait of a rolled back rollout exits 4:\n{out}"
    );
    assert!(
        out.contains("FAILED") && out.contains("RolledBack"),
        "{out}"
    );
    assert_rolled_back_at(&hub, "ro-1");

    // The canary runs revision 2 again, and did run revision 3 (the marker is real).
    let (canary_name, canary) = &agents[0];
    wait_ready(canary_name, canary, 2);
    assert!(ran(canary, "v3-bad"), "the canary must have run revision 3");
    // The others never ran it and were never touched: same process as after revision 2.
    for (i, (n, a)) in agents.iter().enumerate().skip(1) {
        assert!(ran(a, "v2"), "{n} ran revision 2");
        assert!(!ran(a, "v3-bad"), "{n} must never run the bad revision");
        assert_eq!(
            running_ready(a, 2).map(|(pid, _)| pid),
            Some(v2[i].0),
            "{n} keeps its revision 2 process"
        );
    }
}

#[test]
fn an_offline_device_does_not_block_a_rollout_and_gets_the_revision_when_it_returns() {
    if !require_root(
        "an_offline_device_does_not_block_a_rollout_and_gets_the_revision_when_it_returns",
    ) {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = busybox(hub.dir.path());
    let mut agents = fleet(&hub, "off", 5);
    let (code, _, err) = hub.apply("app.yaml", &deployment(&image, "off", "v1", true));
    assert_eq!(code, 0, "apply v1: {err}");
    for (n, a) in &agents {
        wait_ready(n, a, 1);
    }

    // The device that would be the canary goes offline before the apply.
    agents[0].1.stop();
    wait_online(&hub, &agents[..1], false);

    let (code, out) = apply_wait(&hub, "app.yaml", &deployment(&image, "off", "v2", true));
    assert_eq!(
        code, 0,
        "the rollout completes for the online devices:\n{out}"
    );
    assert!(out.contains("pending 1"), "{out}");
    assert_eq!(
        batches(&hub, 2),
        vec![vec!["off-2"], vec!["off-3", "off-4"], vec!["off-5"]]
    );
    let st = rollout_status(&hub);
    let r = &st["rollout"];
    assert_eq!(
        (
            &r["phase"],
            &r["updated"],
            &r["healthy"],
            &r["failed"],
            &r["pending"]
        ),
        (
            &"Complete".into(),
            &4.into(),
            &4.into(),
            &0.into(),
            &1.into()
        ),
        "{st}"
    );
    let off1 = &st["devices"][0];
    assert_eq!(
        (
            &off1["device"],
            &off1["online"],
            &off1["state"],
            &off1["reported"]
        ),
        (&"off-1".into(), &false.into(), &"Pending".into(), &1.into()),
        "{st}"
    );
    for (n, a) in &agents[1..] {
        wait_ready(n, a, 2);
    }
    assert!(!ran(&agents[0].1, "v2"));

    // Back online: it gets revision 2 and runs it.
    agents[0].1.start();
    let (n, a) = &agents[0];
    wait_ready(n, a, 2);
    assert!(ran(a, "v2"));
    wait_for("the hub to see off-1 on revision 2", T, || {
        let st = rollout_status(&hub);
        (st["devices"][0]["reported"] == 2 && st["devices"][0]["online"] == true).then_some(())
    });
}
