//! End-to-end: enrollment with join tokens and `device revoke` (issue 13 part 2). A real
//! hub with its TLS listeners; `token create` → `drover-agent join` → the agent, with the
//! config join wrote, connects over TLS and runs a `hub:` image from an apply (its
//! statuses are accepted: the status key both sides agreed on matches). Expired, used-up,
//! wrong and revoked tokens are refused (same answer, distinct counters); an agent given a
//! second hub's address (another CA) refuses before sending anything; a revoked device's
//! broker login and registry pull are refused and its statuses no longer count; its name
//! cannot join again. Needs root (containers).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::hub::TestHub;
use drover_tests::{bin, oci, require_root, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn deployment(name: &str, role: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  \
         selector: {{matchLabels: {{role: {role}}}}}\n  template:\n    spec:\n      \
         stopGracePeriod: 1s\n      containers:\n        - name: main\n          \
         image: hub:busybox:1.0\n          command: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n"
    )
}

/// `token create ARGS -o json`: (token, join command, id).
fn token_create(hub: &TestHub, args: &[&str]) -> (String, String, String) {
    let mut all = vec!["token", "create", "-o", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = hub.cli(&all);
    assert_eq!(code, 0, "token create: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["join_command"].as_str().unwrap().to_owned(),
        v["view"]["id"].as_str().unwrap().to_owned(),
    )
}

fn join(url: &str, token: &str, name: &str, config: &Path) -> Output {
    Command::new(bin("drover-agent"))
        .args(["join", url, token, "--name", name, "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn https_url(hub: &TestHub) -> String {
    format!("https://127.0.0.1:{}", hub.tls_ports.unwrap().1)
}

fn device(hub: &TestHub, name: &str) -> Option<Value> {
    hub.devices()
        .as_array()?
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
}

fn stat(hub: &TestHub, key: &str) -> u64 {
    hub.stats()[key].as_u64().unwrap_or(0)
}

/// The value of `key = "…"` in a TOML text.
fn toml_value(text: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    line.split('"').nth(1).unwrap().to_owned()
}

#[test]
fn a_device_joins_with_a_token_runs_a_workload_and_is_cut_off_when_revoked() {
    if !require_root("a_device_joins_with_a_token_runs_a_workload_and_is_cut_off_when_revoked") {
        return;
    }
    let mut hub = TestHub::with_tls();
    hub.start();
    let layout = hub.dir.path().join("busybox");
    oci::busybox_layout(&layout, "1.0").unwrap();
    let (code, _, err) = hub.cli(&["image", "import", &layout.display().to_string()]);
    assert_eq!(code, 0, "image import: {err}");
    let url = https_url(&hub);

    let (token, command, id) = token_create(&hub, &["--label", "role=enr"]);
    assert_eq!(command, format!("drover-agent join {url} {token}"));
    let secret = token.rsplit('.').next().unwrap().to_owned();
    let (code, ls, _) = hub.cli(&["token", "ls", "-o", "json"]);
    assert_eq!(code, 0);
    assert!(ls.contains(&id) && !ls.contains(&secret), "{ls}");
    assert!(!hub.logs().contains(&secret), "the secret is never logged");

    let work = tempfile::tempdir().unwrap();
    // A config that cannot be written: refused (8) before the hub registers anything,
    // so the single-use token and the name are still there for the real join.
    let out = join(
        &url,
        &token,
        "enr-1",
        Path::new("/proc/drover-nope/agent.toml"),
    );
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(
        device(&hub, "enr-1").is_none(),
        "registered without a config"
    );
    let cfg = work.path().join("etc/agent.toml");
    let out = join(&url, &token, "enr-1", &cfg);
    assert!(out.status.success(), "join: {}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("drover-agent run --config {}", cfg.display())),
        "{stdout}"
    );
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&cfg).unwrap();
    for want in [
        "device = \"enr-1\"",
        "key_agreement = ",
        "mqtts://127.0.0.1:",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert!(text.contains(&format!("registry = \"{url}\"")), "{text}");
    let credential = toml_value(&text, "credential");
    // The hub never saw the credential: no row of its store holds it.
    let db = std::fs::read(hub.data_dir().join("fleet.db")).unwrap();
    let wal = std::fs::read(hub.data_dir().join("fleet.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(credential.len())
                .any(|w| w == credential.as_bytes())
        );
    }

    // Single use: the second join with it is refused; the config exists guard comes first.
    let again = join(&url, &token, "enr-2", &cfg);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    let again = join(&url, &token, "enr-2", &work.path().join("b.toml"));
    assert_eq!(again.status.code(), Some(5), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("join refused"),
        "{}",
        stderr(&again)
    );

    let mut agent = TestAgent::new("enr-1");
    agent.connect_to_hub(&text);
    agent.start();
    assert_eq!(hub.apply("enr.yaml", &deployment("enrolled", "enr")).0, 0);
    wait_for("the joined device to run the hub image", T, || {
        agent.running_pid("enrolled", "main")
    });
    wait_for("the joined device online with accepted statuses", T, || {
        let d = device(&hub, "enr-1")?;
        (d["online"] == true && d["ready"] == 1 && d["labels"]["role"] == "enr").then_some(())
    });

    // Refusals: expired, wrong secret, revoked; each counted, all the same answer.
    let (expired, _, _) = token_create(&hub, &["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (good, _, _) = token_create(&hub, &[]);
    let wrong = format!("{}{}", &good[..good.len() - 4], "0000");
    let (revoked, _, revoked_id) = token_create(&hub, &[]);
    let (code, _, err) = hub.cli(&["token", "revoke", &revoked_id]);
    assert_eq!(code, 0, "{err}");
    let mut bodies = Vec::new();
    for t in [&expired, &wrong, &revoked] {
        let o = join(&url, t, "enr-x", &work.path().join("x.toml"));
        assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
        bodies.push(stderr(&o));
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    for reason in ["expired", "wrong_secret", "revoked", "used_up"] {
        assert_eq!(stat(&hub, &format!("join_refused_{reason}")), 1, "{reason}");
    }
    assert!(!work.path().join("x.toml").exists());

    // Revoke: cut off, kept for audit, its name refused.
    let (code, out, err) = hub.cli(&["device", "revoke", "enr-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let d = device(&hub, "enr-1").unwrap();
    assert!(d["revoked_ms"].as_u64().is_some(), "{d}");
    let (_, table, _) = hub.cli(&["get", "devices"]);
    assert!(table.contains("revoked"), "{table}");
    // The connection it held over the hub's TLS port is closed, and it cannot log in again.
    let log = wait_for("the revoked agent to lose the hub broker", T, || {
        let l = agent.logs();
        l.contains("lost the hub broker").then_some(l)
    });
    assert!(log.contains("connected to the hub broker"), "{log}");
    assert!(
        hub.logs()
            .contains("closed an MQTT over TLS connection: its login was revoked"),
        "{}",
        hub.logs()
    );
    let seen = d["last_seen_ms"].as_u64().unwrap();
    // Three heartbeats later its status has not moved.
    std::thread::sleep(Duration::from_secs(7));
    let d = device(&hub, "enr-1").unwrap();
    assert_eq!(d["last_seen_ms"].as_u64().unwrap(), seen, "{d}");
    // It kept trying (back-off) and never got in again.
    let log = agent.logs();
    assert_eq!(
        log.matches("connected to the hub broker").count(),
        1,
        "{log}"
    );
    // Its next broker login and its registry pull are refused.
    let password = drover_protocol::keys::mqtt_password(credential.as_bytes());
    let sub = Command::new("mosquitto_sub")
        .args(hub.mqtt_login("enr-1", &password))
        .args(["-t", "drover/v1/dev/enr-1/desired", "-C", "1", "-W", "5"])
        .output()
        .unwrap();
    assert!(!sub.status.success(), "a revoked device's login is refused");
    let registry = drover_protocol::keys::registry_password(credential.as_bytes());
    let ca = hub.data_dir().join("tls/ca.pem");
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .args(["-u", &format!("enr-1:{registry}")])
        .arg(format!("{url}/v2/busybox/manifests/1.0"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "401");
    let (fresh, _, _) = token_create(&hub, &[]);
    let o = join(&url, &fresh, "enr-1", &work.path().join("y.toml"));
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("revoked"), "{}", stderr(&o));
    agent.stop();
}

#[test]
fn an_agent_given_another_hubs_address_refuses_before_sending_the_token() {
    let mut hub = TestHub::with_tls();
    hub.start();
    let mut other = TestHub::with_tls();
    other.start();
    let (token, _, _) = token_create(&hub, &[]);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("agent.toml");
    let o = join(&https_url(&other), &token, "mitm-1", &cfg);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("impostor") && err.contains("Nothing was sent"),
        "{err}"
    );
    assert!(!cfg.exists());
    // The impostor saw no join request at all.
    let s = other.stats();
    let tried: u64 = s
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("join_refused_"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(tried, 0, "{s}");
    assert!(!other.logs().contains("mitm-1"), "{}", other.logs());
    // The genuine hub still takes the token.
    let o = join(&https_url(&hub), &token, "mitm-1", &cfg);
    assert!(o.status.success(), "{}", stderr(&o));
}
