//! End-to-end: a registered device cannot read another device's desired state (issue 13,
//! part 3). Two devices on a real hub: `alice` runs a real agent whose workload gets a
//! secret env value; `bob` is a second registered device that logs in with its own
//! derived MQTT password and tries to read alice's state.
//! - Embedded broker (no topic ACLs): bob receives alice's state on
//!   `drover/v1/dev/+/desired`, but the secret is nowhere in the bytes and bob's key
//!   cannot open them, while alice's key can and her container prints the value.
//! - Mosquitto with `broker-config mosquitto-acl`: bob receives nothing at all of alice's
//!   topics and what he publishes on her status topic never arrives.
//!
//! Needs root (real containers).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_protocol::Name;
use drover_protocol::auth::AuthError;
use drover_protocol::keys::SealSecret;
use drover_protocol::sealed::{open_desired, verify_sealed};
use drover_tests::agent::TestAgent;
use drover_tests::hub::{
    Mosquitto, TestHub, device_password, free_port, snippet_credential as credential,
};
use drover_tests::{oci, require_root, wait_for};
use ed25519_dalek::{SigningKey, VerifyingKey};

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "sealed-secret-7f3a9c-value";

fn deployment(image: &Path) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  selector: {{matchLabels: {{role: alice}}}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n      containers:\n        - name: main\n          image: oci:{}:latest\n          env: [{{name: TOKEN, value: \"{SECRET}\"}}]\n          command: [/bin/sh, -c, \"echo token=$TOKEN; while true; do sleep 1; done\"]\n",
        image.display()
    )
}

fn hub_key(hub: &TestHub) -> VerifyingKey {
    let bytes = std::fs::read(hub.dir.path().join("data/hub.key")).unwrap();
    SigningKey::from_bytes(&bytes.as_slice().try_into().unwrap()).verifying_key()
}

/// `mosquitto_sub` as `user` with `password` on `filters` for `wait_s` seconds: every
/// message as `(topic, payload)`, and whether the client could subscribe at all.
fn sub(
    port: u16,
    user: &str,
    password: &str,
    filters: &[&str],
    wait_s: u32,
) -> Vec<(String, Vec<u8>)> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-i", user, "-u", user, "-P", password, "-q", "1"])
        .args(["-W", &wait_s.to_string(), "-F", "%t %x"]);
    for f in filters {
        cmd.args(["-t", f]);
    }
    let out = cmd.stderr(Stdio::null()).output().expect("mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, h) = l.split_once(' ')?;
            Some((t.to_owned(), hex::decode(h.trim()).ok()?))
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Alice's real agent runs the workload with the secret in its environment.
fn alice_runs_the_secret(alice: &TestAgent) {
    alice.wait_running("app", "main", T);
    wait_for("the container prints the secret", T, || {
        let (_, out, _) = alice.cli(&["logs", "app"]);
        out.contains(&format!("token={SECRET}")).then_some(())
    });
}

#[test]
fn another_device_gets_only_ciphertext_on_the_embedded_broker() {
    if !require_root("another_device_gets_only_ciphertext_on_the_embedded_broker") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    let alice_snippet = hub.device_add("alice", &["role=alice"]);
    let alice_cred = credential(&alice_snippet);
    let bob_cred = credential(&hub.device_add("bob", &["role=bob"]));
    let mut alice = TestAgent::new("alice");
    alice.connect_to_hub(&alice_snippet);
    alice.start();
    assert_eq!(hub.apply("app.yaml", &deployment(&image)).0, 0);
    alice_runs_the_secret(&alice);

    // The credential itself is no MQTT password any more.
    let none = sub(
        hub.broker_port,
        "bob",
        &bob_cred,
        &["drover/v1/dev/+/desired"],
        2,
    );
    assert!(none.is_empty(), "bob logged in with his credential");
    let got = sub(
        hub.broker_port,
        "bob",
        &device_password(&bob_cred),
        &["drover/v1/dev/+/desired"],
        3,
    );
    let theirs: Vec<&Vec<u8>> = got
        .iter()
        .filter(|(t, _)| t == "drover/v1/dev/alice/desired")
        .map(|(_, p)| p)
        .collect();
    assert!(!theirs.is_empty(), "bob received alice's state: {got:?}");
    let (key, name) = (hub_key(&hub), Name::new("alice").unwrap());
    let bob_seal = SealSecret::derive(bob_cred.as_bytes());
    let alice_seal = SealSecret::derive(alice_cred.as_bytes());
    for payload in theirs {
        assert!(
            !contains(payload, SECRET.as_bytes()),
            "the secret is in clear"
        );
        // Genuine (signed by the hub, for alice), but closed to bob…
        let sealed = verify_sealed(payload, &key, &name, 0).unwrap();
        assert!(sealed.generation > 0);
        assert!(matches!(
            open_desired(payload, &key, &name, 0, &bob_seal),
            Err(AuthError::Unseal)
        ));
        // …and open to alice's key, with the secret inside.
        let state = open_desired(payload, &key, &name, 0, &alice_seal).unwrap();
        let env = &state.workloads[0].containers[0].env;
        assert!(env.iter().any(|e| e.value == SECRET), "{env:?}");
    }
    drop(alice);
}

#[test]
fn mosquitto_with_the_generated_acl_gives_another_device_nothing() {
    if !require_root("mosquitto_with_the_generated_acl_gives_another_device_nothing") {
        return;
    }
    let port = free_port();
    let mut hub = TestHub::with_external_broker(port);
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    let alice_snippet = hub.device_add("alice", &["role=alice"]);
    let alice_pw = device_password(&credential(&alice_snippet));
    let bob_pw = device_password(&credential(&hub.device_add("bob", &["role=bob"])));
    let (code, acl, err) = hub.cli(&["broker-config", "mosquitto-acl"]);
    assert_eq!(code, 0, "{err}");
    let hub_cred = std::fs::read_to_string(hub.dir.path().join("data/hub.credential")).unwrap();
    let hub_cred = hub_cred.trim();
    let logins = [
        ("drover-hub", hub_cred),
        ("alice", &alice_pw),
        ("bob", &bob_pw),
    ];
    let _mq = Mosquitto::start_with_acl(port, &acl, &logins);
    let mut alice = TestAgent::new("alice");
    alice.connect_to_hub(&alice_snippet);
    alice.start();
    assert_eq!(hub.apply("app.yaml", &deployment(&image)).0, 0);
    alice_runs_the_secret(&alice);

    // Bob reads his own desired state (his login works)…
    let own = wait_for("bob reads his own desired state", T, || {
        let got = sub(port, "bob", &bob_pw, &["drover/v1/dev/bob/desired"], 2);
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(own[0].0, "drover/v1/dev/bob/desired");
    // …and nothing of alice's: not by wildcard, not by name, not her other topics.
    let filters = [
        "drover/v1/dev/+/desired",
        "drover/v1/dev/alice/desired",
        "drover/v1/dev/alice/#",
    ];
    let got = sub(port, "bob", &bob_pw, &filters, 4);
    assert!(
        got.iter().all(|(t, _)| t == "drover/v1/dev/bob/desired"),
        "bob received another device's messages: {:?}",
        got.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );

    // What bob publishes on alice's status topic never reaches the hub's login, while
    // alice's own heartbeats do.
    let marker = b"bob-was-here";
    let watcher = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-i", "watcher", "-u", "drover-hub", "-P", hub_cred])
        .args(["-t", "drover/v1/dev/alice/status", "-W", "6", "-F", "%x"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..3 {
        let st = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-i", "bob", "-u", "bob", "-P", &bob_pw, "-q", "1"])
            .args(["-t", "drover/v1/dev/alice/status", "-m"])
            .arg(std::str::from_utf8(marker).unwrap())
            .status()
            .expect("mosquitto_pub");
        assert!(st.success(), "Mosquitto drops it quietly");
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = watcher.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(!seen.trim().is_empty(), "alice's heartbeats reach the hub");
    assert!(
        !seen.contains(&hex::encode(marker)),
        "bob's status arrived: {seen}"
    );
    drop(alice);
}
