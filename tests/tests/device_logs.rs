//! End-to-end: logs from a device and restarts, over signed commands. A real hub (its
//! embedded broker), a real agent and real busybox containers, one printing a numbered
//! line every 200 ms, one a line a second: `logs -f` streams lines as they are written,
//! `--tail`, `--since` (to the second, for the slow writer too) and `--limit-bytes`
//! bound the output (a cut output, and a follow stopped at the limit, exit 0 with a note), `restart` restarts the container (restart count + 1, new pid), and
//! commands for another device, replayed (captured off the broker and published again)
//! or badly signed are refused and counted by the agent, which restarts nothing for them.
//! Errors are JSON with a kind and the status that goes with it (404 unknown workload,
//! 429 too many streams, 400 bad parameters); a device that stops answering times out
//! and one that dies while followed ends the follow with exit 1 and a message.
//! Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drover_protocol::Name;
use drover_protocol::command::{Command as DeviceCommand, CommandKind, sign_command};
use drover_tests::agent::TestAgent;
use drover_tests::hub::{TestHub, device_password, snippet_credential as credential};
use drover_tests::{require_root, wait_for};
use ed25519_dalek::SigningKey;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const DEVICE: &str = "logs-1";

fn deployment(image: &Path) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: counter}}\nspec:\n  selector: {{matchLabels: {{site: logs}}}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: oci:{}:latest\n          command: [/bin/sh, -c, \"i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done\"]\n",
        image.display()
    )
}

/// A workload writing `slow line N` once a second.
fn ticker(image: &Path) -> String {
    deployment(image)
        .replace("name: counter", "name: ticker")
        .replace("echo line $i", "echo slow line $i")
        .replace("sleep 0.2", "sleep 1")
}

/// `curl` of an API path with the read-only token: status code and body.
fn http_get(hub: &TestHub, path: &str) -> (u16, Value) {
    let auth = format!("Authorization: Bearer {}", hub.read_token());
    let out = Command::new("curl")
        .args([
            "-s",
            "-g",
            "-H",
            &auth,
            "-w",
            "\n%{http_code}",
            &format!("{}{path}", hub.api),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (code.trim().parse().unwrap(), json)
}

/// The numbers of the `line N` lines of `text`.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line ")?.trim().parse().ok())
        .collect()
}

/// `hub.commands` of the agent's report.
fn command_stats(a: &TestAgent) -> Value {
    a.ps()
        .map(|p| p["agent"]["hub"]["commands"].clone())
        .unwrap_or(Value::Null)
}

fn refused(a: &TestAgent, reason: &str) -> u64 {
    command_stats(a)["rejected_by_reason"][reason]
        .as_u64()
        .unwrap_or(0)
}

fn restarts(a: &TestAgent) -> u64 {
    a.container("counter", "main").unwrap()["restarts"]
        .as_u64()
        .unwrap()
}

/// Publishes `payload` on the device's `cmd` topic as the registered device `spy`.
fn publish_cmd(hub: &TestHub, spy_cred: &str, payload: &[u8]) {
    let file = hub.dir.path().join("cmd.bin");
    std::fs::write(&file, payload).unwrap();
    let st = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &hub.broker_port.to_string()])
        .args(["-i", "spy", "-u", "spy", "-P", spy_cred, "-q", "1"])
        .args(["-t", &format!("drover/v1/dev/{DEVICE}/cmd"), "-f"])
        .arg(&file)
        .status()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    assert!(st.success());
}

#[test]
fn logs_and_restart_from_the_hub_over_signed_commands() {
    if !require_root("logs_and_restart_from_the_hub_over_signed_commands") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let (a, image) = TestAgent::with_busybox("logs-1");
    a.connect_to_hub(&hub.device_add(DEVICE, &["site=logs"]));
    let mut a = a;
    a.start();
    assert_eq!(hub.apply("counter.yaml", &deployment(&image)).0, 0);
    assert_eq!(hub.apply("ticker.yaml", &ticker(&image)).0, 0);
    let pid = a.wait_running("counter", "main", T);
    wait_for("some output on the device", T, || {
        let (code, out, _) = hub.cli(&["logs", DEVICE, "counter"]);
        (code == 0 && numbers(&out).len() >= 30).then_some(())
    });

    // --tail 3: exactly the last three lines, consecutive.
    let (code, out, err) = hub.cli(&["logs", DEVICE, "counter", "--tail", "3"]);
    assert_eq!(code, 0, "{err}");
    let n = numbers(&out);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(n.len(), 3, "{out}");
    assert!(n[1] == n[0] + 1 && n[2] == n[1] + 1, "{out}");
    assert!(n[2] >= 29, "{out}");

    // --since 2s: about two seconds of output (10 lines, exact to about a second or
    // a few lines), never the start.
    let (code, out, err) = hub.cli(&["logs", DEVICE, "counter", "--since", "2s"]);
    assert_eq!(code, 0, "{err}");
    let n = numbers(&out);
    assert!((5..=25).contains(&n.len()), "{} lines: {out}", n.len());
    assert!(n[0] > 0 && n.windows(2).all(|w| w[1] == w[0] + 1), "{out}");
    let (_, all, _) = hub.cli(&["logs", DEVICE, "counter"]);
    assert!(numbers(&all).len() > n.len() + 10);

    since_is_exact_for_a_slow_writer(&hub);
    limit_bytes_takes_units(&hub);
    a_follow_stops_at_the_limit(&hub);

    follow_streams_new_lines_and_stops_on_ctrl_c(&hub, &a);
    too_many_streams_is_busy(&hub, &a);

    // Errors say what is wrong; exit status 1, JSON with a kind over the API.
    let (code, _, err) = hub.cli(&["logs", DEVICE, "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no workload named nope on logs-1 (it runs: counter, ticker)"),
        "{err}"
    );
    let (status, body) = http_get(&hub, &format!("/v1/devices/{DEVICE}/logs/nope"));
    assert_eq!(
        (status, &body["kind"]),
        (404, &Value::from("not_found")),
        "{body}"
    );
    let (status, body) = http_get(&hub, &format!("/v1/devices/{DEVICE}/logs/counter?tail=-1"));
    assert_eq!(
        (status, &body["kind"]),
        (400, &Value::from("bad_request")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().starts_with("tail: "),
        "{body}"
    );
    let (status, body) = http_get(
        &hub,
        &format!("/v1/devices/{DEVICE}/logs/counter?since=abc"),
    );
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("since: ") && error.matches("like").count() == 1,
        "{error}"
    );
    let (status, body) = http_get(&hub, &format!("/v1/devices/{DEVICE}/logs/counter?lines=3"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("lines"), "{body}");
    let (code, _, err) = hub.cli(&["restart", DEVICE, "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no workload named nope"), "{err}");
    let (code, _, err) = hub.cli(&["restart", DEVICE, "Bad_Name"]);
    assert_eq!(code, 2, "the hub finds the request itself wrong: {err}");
    let spy = hub.device_add("spy", &[]);
    // The spy's MQTT password (derived from its credential): all it needs to log in.
    let spy_cred = device_password(&credential(&spy));
    let (code, _, err) = hub.cli(&["restart", "spy", "counter"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("device spy is offline (last seen never)"),
        "{err}"
    );
    let (code, _, _) = hub.cli(&["logs", DEVICE]);
    assert_eq!(code, 2, "a missing argument is a usage error");

    // restart, while a spy captures the command off the broker.
    let before = restarts(&a);
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &hub.broker_port.to_string()])
        .args([
            "-i", "spy", "-u", "spy", "-P", &spy_cred, "-q", "1", "-C", "1", "-N",
        ])
        .args(["-t", &format!("drover/v1/dev/{DEVICE}/cmd")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(500));
    let (code, out, err) = hub.cli(&["restart", DEVICE, "counter"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restarting counter on logs-1: main"), "{out}");
    let new_pid = wait_for("a new pid", T, || {
        a.running_pid("counter", "main").filter(|p| *p != pid)
    });
    assert_eq!(restarts(&a), before + 1);
    let mut captured = Vec::new();
    sub.stdout
        .take()
        .unwrap()
        .read_to_end(&mut captured)
        .unwrap();
    let _ = sub.wait();
    assert!(!captured.is_empty(), "captured the restart command");

    // Replayed, for another device, badly signed: refused, counted, nothing restarts.
    publish_cmd(&hub, &spy_cred, &captured);
    wait_for("the replay refused", T, || {
        (refused(&a, "replayed") == 1).then_some(())
    });
    let key_bytes = std::fs::read(hub.dir.path().join("data/hub.key")).unwrap();
    let hub_key = SigningKey::from_bytes(&key_bytes.as_slice().try_into().unwrap());
    let restart_of = |device: &str| DeviceCommand {
        device: Name::new(device).unwrap(),
        id: u64::MAX / 2,
        kind: CommandKind::Restart {
            workload: Name::new("counter").unwrap(),
        },
    };
    publish_cmd(
        &hub,
        &spy_cred,
        &sign_command(&restart_of("other"), &hub_key).unwrap(),
    );
    let forger = SigningKey::from_bytes(&[7; 32]);
    publish_cmd(
        &hub,
        &spy_cred,
        &sign_command(&restart_of(DEVICE), &forger).unwrap(),
    );
    wait_for("all three refused", T, || {
        (refused(&a, "wrong_device") == 1 && refused(&a, "bad_signature") == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.running_pid("counter", "main"),
        Some(new_pid),
        "nothing restarted"
    );
    assert_eq!(restarts(&a), before + 1);
    assert_eq!(command_stats(&a)["rejected"], 3, "{}", command_stats(&a));
    assert!(a.logs().contains("refused a hub command"), "{}", a.logs());

    a_device_that_stops_answering_times_out(&hub, &a);
    a_follow_ends_when_the_device_goes_offline(&hub, &mut a);
}

/// `--since 2s` of a line a second: the lines of the last two seconds and at most the
/// one or two before (the time index marks every line of a quiet writer).
fn since_is_exact_for_a_slow_writer(hub: &TestHub) {
    let slow = |out: &str| -> Vec<u64> {
        out.lines()
            .filter_map(|l| l.strip_prefix("slow line ")?.trim().parse().ok())
            .collect()
    };
    wait_for("the slow writer's lines", T, || {
        let (code, out, _) = hub.cli(&["logs", DEVICE, "ticker"]);
        (code == 0 && slow(&out).len() >= 8).then_some(())
    });
    for _ in 0..3 {
        let (code, out, err) = hub.cli(&["logs", DEVICE, "ticker", "--since", "2s"]);
        assert_eq!(code, 0, "{err}");
        let n = slow(&out);
        assert!((1..=4).contains(&n.len()), "{} lines: {out}", n.len());
        assert!(n[0] >= 4, "never the start: {out}");
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// `--limit-bytes` takes `64KiB`, `500k`… and refuses what is not a size (usage, 2).
fn limit_bytes_takes_units(hub: &TestHub) {
    let (_, before, _) = hub.cli(&["logs", DEVICE, "counter"]);
    let (code, out, err) = hub.cli(&["logs", DEVICE, "counter", "--limit-bytes", "1KiB"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.len() <= 1024 && out.len() >= before.len().min(1024),
        "{}",
        out.len()
    );
    let (code, out, err) = hub.cli(&["logs", DEVICE, "counter", "--limit-bytes", "64"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 64, "{out}");
    // Cut by the limit: a note says so, on a line of its own.
    let note =
        "drover-hub: output limited to 64 bytes (--limit-bytes); the first line may be partial";
    assert!(err.lines().any(|l| l == note), "{err:?}");
    let (code, _, err) = hub.cli(&["logs", DEVICE, "counter", "--limit-bytes", "12parsecs"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected a size like"), "{err}");
}

/// `logs -f --limit-bytes 150`: the device stops at the limit, which is what was asked
/// for: exit 0 and a note on a line of its own (after a newline when the output ended
/// mid-line), never an error.
fn a_follow_stops_at_the_limit(hub: &TestHub) {
    let mut child = KillOnDrop(
        hub.cli_command()
            .args(["logs", DEVICE, "counter", "-f"])
            .args(["--tail", "1", "--limit-bytes", "150"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        // About 15 lines of 10 bytes, 5 a second.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "logs -f --limit-bytes 150 still running after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out.len(), 150, "{out}");
    let lines = out.matches('\n').count();
    let note = format!("drover-hub: stopped at --limit-bytes 150 ({lines} lines)\n");
    let own_line = if out.ends_with('\n') { "" } else { "\n" };
    assert_eq!(err, format!("{own_line}{note}"), "after {out:?}");
}

/// The device serves 4 streams at once: a fifth is refused as busy (429, exit 1).
fn too_many_streams_is_busy(hub: &TestHub, a: &TestAgent) {
    let follows: Vec<KillOnDrop> = (0..4)
        .map(|_| {
            KillOnDrop(
                hub.cli_command()
                    .args(["logs", DEVICE, "counter", "-f", "--tail", "0"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    wait_for("four streams", T, || {
        (command_stats(a)["streams"] == 4).then_some(())
    });
    let (status, body) = http_get(hub, &format!("/v1/devices/{DEVICE}/logs/counter"));
    assert_eq!(
        (status, &body["kind"]),
        (429, &Value::from("busy")),
        "{body}"
    );
    let (code, _, err) = hub.cli(&["logs", DEVICE, "counter"]);
    assert_eq!(code, 1);
    assert!(err.contains("already sends 4 log streams"), "{err}");
    for f in &follows {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(f.0.id() as i32, libc::SIGTERM) };
    }
    drop(follows);
    wait_for("the streams to end", T, || {
        (command_stats(a)["streams"] == 0).then_some(())
    });
}

/// A frozen agent (SIGSTOP: connected, silent) never answers: `logs` ends with a message
/// and exit 1 after the hub's answer timeout, instead of hanging.
fn a_device_that_stops_answering_times_out(hub: &TestHub, a: &TestAgent) {
    let pid = a.pid().unwrap() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let start = Instant::now();
    let (code, _, err) = hub.cli(&["logs", DEVICE, "counter"]);
    let took = start.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("logs-1 did not answer within 15 s") || err.contains("went offline"),
        "{err}"
    );
    assert!(took < Duration::from_secs(25), "{took:?}");
    wait_for("the agent answering again", T, || {
        (hub.cli(&["logs", DEVICE, "counter", "--tail", "1"]).0 == 0).then_some(())
    });
}

/// `logs -f` while the agent is killed: the hub sees the device go offline and ends the
/// follow; the CLI says so and exits 1 (like `logs` to an offline device) in bounded time.
fn a_follow_ends_when_the_device_goes_offline(hub: &TestHub, a: &mut TestAgent) {
    let mut child = KillOnDrop(
        hub.cli_command()
            .args(["logs", DEVICE, "counter", "-f", "--tail", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<usize>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(n).is_err() {
                return;
            }
        }
    });
    let mut got = 0;
    let start = Instant::now();
    while got < 20 && start.elapsed() < T {
        got += rx.recv_timeout(Duration::from_secs(1)).unwrap_or(0);
    }
    assert!(got >= 20, "the follow streams before the kill");
    a.kill9();
    let killed = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "logs -f still running 30 s after its device died"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("device logs-1 went offline while following (last seen ")
            && err.contains(" lines received"),
        "{err}"
    );
    eprintln!(
        "logs -f ended {:?} after the agent was killed: {err}",
        killed.elapsed()
    );
    let (code, _, err) = hub.cli(&["logs", DEVICE, "counter"]);
    assert_eq!(
        code, 1,
        "the same status as a fresh logs to an offline device: {err}"
    );
    assert!(err.contains("device logs-1 is offline"), "{err}");
}

/// `logs -f`: new numbers arrive while the test reads; killing the CLI (as Ctrl-C does)
/// makes the hub cancel the stream on the device.
fn follow_streams_new_lines_and_stops_on_ctrl_c(hub: &TestHub, a: &TestAgent) {
    let mut child = KillOnDrop(
        hub.cli_command()
            .args(["logs", DEVICE, "counter", "-f", "--tail", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut text = Vec::new();
    let mut arrivals = Vec::new();
    while start.elapsed() < Duration::from_secs(4) {
        if let Ok((at, bytes)) = rx.recv_timeout(Duration::from_millis(100)) {
            text.extend_from_slice(&bytes);
            arrivals.push((at, numbers(&String::from_utf8_lossy(&text)).last().copied()));
        }
    }
    let n = numbers(&String::from_utf8_lossy(&text));
    assert!(n.len() >= 12, "about 20 lines in 4 s: {n:?}");
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
    // They came while reading, not in one piece at the end.
    let first = arrivals.first().unwrap().0;
    let spread = arrivals.last().unwrap().0 - first;
    assert!(
        arrivals.len() >= 8 && spread >= Duration::from_secs(2),
        "{arrivals:?}"
    );
    assert_eq!(command_stats(a)["streams"], 1, "{}", command_stats(a));
    // SIGTERM, not SIGINT: a test run started in the background (`cmd &`, nohup, some CI
    // runners) hands its children SIGINT ignored, and the CLI would never end. Either
    // signal ends the CLI without a word to the hub: the closed connection cancels the
    // stream (what Ctrl-C does).
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let _ = child.0.wait();
    wait_for(
        "the stream to end on the device",
        Duration::from_secs(15),
        || (command_stats(a)["streams"] == 0).then_some(()),
    );
}

/// A child process killed when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
