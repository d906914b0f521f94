//! End-to-end: logs from a device and restarts, over signed commands. A real hub (its
//! embedded broker), a real agent and a real busybox container printing a numbered line
//! every 200 ms: `logs -f` streams lines as they are written, `--tail` and `--since`
//! bound the output, `restart` restarts the container (restart count + 1, new pid), and
//! commands for another device, replayed (captured off the broker and published again)
//! or badly signed are refused and counted by the agent, which restarts nothing for them.
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
use drover_tests::hub::{TestHub, snippet_credential as credential};
use drover_tests::{bin, require_root, wait_for};
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

    follow_streams_new_lines_and_stops_on_ctrl_c(&hub, &a);

    // Errors say what is wrong; exit status 1.
    let (code, _, err) = hub.cli(&["logs", DEVICE, "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no workload named nope on logs-1 (it runs: counter)"),
        "{err}"
    );
    let spy = hub.device_add("spy", &[]);
    let spy_cred = credential(&spy);
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
}

/// `logs -f`: new numbers arrive while the test reads; killing the CLI (as Ctrl-C does)
/// makes the hub cancel the stream on the device.
fn follow_streams_new_lines_and_stops_on_ctrl_c(hub: &TestHub, a: &TestAgent) {
    let mut child = KillOnDrop(
        Command::new(bin("drover-hub"))
            .args([
                "--api", &hub.api, "logs", DEVICE, "counter", "-f", "--tail", "1",
            ])
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
