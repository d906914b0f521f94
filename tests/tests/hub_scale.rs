//! The hub at fleet scale, end to end with the real binary and real brokers: bulk
//! registration, dry runs, and a crash (kill -9) in the middle of an apply to thousands
//! of devices — the store keeps either the old or the new fleet, and after the restart
//! every device gets a signed desired state at least as new as anything it saw.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drover_protocol::Name;
use drover_protocol::sealed::verify_sealed;
use drover_tests::hub::{Mosquitto, TestHub};
use drover_tests::wait_for;
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

const DEVICES: usize = 2_000;

fn deployment(round: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: fleet}}\nspec:\n  selector: {{matchLabels: {{fleet: scale}}}}\n  template:\n    spec:\n      containers:\n        - name: main\n          image: oci:/var/lib/images/sensor:1.0\n          env: [{{name: ROUND, value: \"{round}\"}}]\n"
    )
}

/// Registers `n` devices `d-0..` labelled `fleet=scale` through `device import`.
fn import(hub: &TestHub, n: usize) -> Value {
    let csv = (0..n).fold("name,labels\n".to_owned(), |acc, i| {
        acc + &format!("d-{i},fleet=scale\n")
    });
    let path = hub.dir.path().join("fleet.csv");
    fs::write(&path, csv).expect("csv");
    let (code, out, err) = hub.cli(&[
        "device",
        "import",
        &path.display().to_string(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "device import: {err}");
    serde_json::from_str(&out).expect("import json")
}

/// `mosquitto_sub` on every device's desired topic, one line `TOPIC HEXPAYLOAD` each.
struct Watcher {
    child: Child,
    path: std::path::PathBuf,
}

impl Watcher {
    fn start(port: u16, path: std::path::PathBuf) -> Watcher {
        let out = fs::File::create(&path).expect("watch file");
        // Line-buffered, so that the file holds every message received so far.
        let child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
            ])
            .args(["-t", "drover/v1/dev/+/desired", "-F", "%t %x"])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        Watcher { child, path }
    }

    /// Every `(device, generation)` received so far, in order, signature verified (the
    /// states are sealed to their devices: device and generation are all a watcher sees).
    fn seen(&self, key: &ed25519_dalek::VerifyingKey) -> Vec<(String, u64)> {
        let file = fs::File::open(&self.path).expect("watch file");
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                let (topic, hex) = l.split_once(' ')?;
                let device = topic.split('/').nth(3)?.to_owned();
                let payload = hex::decode(hex.trim()).ok()?;
                let name = Name::new(device.clone()).ok()?;
                let state = verify_sealed(&payload, key, &name, 0).expect("a genuine state");
                Some((device, state.generation))
            })
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn generations(hub: &TestHub) -> BTreeMap<String, u64> {
    hub.devices()
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            let name = d["name"].as_str().expect("name").to_owned();
            (name, d["desired_generation"].as_u64().expect("generation"))
        })
        .collect()
}

/// When to crash the hub during an apply.
enum Crash {
    /// Shortly after the apply was sent (typically before its commit).
    AfterMs(u64),
    /// Once a device received the new generation: after the commit, while or after the
    /// hub publishes (on this machine 2,000 states are out within one 50 ms poll).
    AfterFirstPublish(u64),
}

/// Applies `round` in the background, kills the hub as `crash` says, restarts it and
/// checks: one fleet in the store (all devices at `old` or all at `old + 1`), every
/// device republished with what the store holds and never less than it saw.
fn crash_during(
    hub: &mut TestHub,
    watcher: &Watcher,
    key: &VerifyingKey,
    round: &str,
    old: u64,
    crash: Crash,
) {
    let path = hub.dir.path().join(format!("fleet-{round}.yaml"));
    fs::write(&path, deployment(round)).expect("manifest");
    let mut apply = hub
        .cli_command()
        .args(["apply", "-f", &path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply");
    match crash {
        Crash::AfterMs(ms) => std::thread::sleep(Duration::from_millis(ms)),
        Crash::AfterFirstPublish(new) => wait_for(
            "the first device at the new generation",
            Duration::from_secs(60),
            || {
                watcher
                    .seen(key)
                    .iter()
                    .any(|(_, g)| *g == new)
                    .then_some(())
            },
        ),
    }
    hub.kill();
    let _ = apply.wait();
    std::thread::sleep(Duration::from_millis(500));
    let before = watcher.seen(key);
    let mut max_seen: BTreeMap<String, u64> = BTreeMap::new();
    for (d, g) in &before {
        let m = max_seen.entry(d.clone()).or_default();
        *m = (*m).max(*g);
    }
    hub.start();
    let gens = generations(hub);
    assert_eq!(gens.len(), DEVICES);
    let distinct: BTreeSet<u64> = gens.values().copied().collect();
    assert!(
        distinct == [old].into() || distinct == [old + 1].into(),
        "a torn fleet: generations {distinct:?}"
    );
    let after = wait_for("every device republished", Duration::from_secs(60), || {
        let seen = watcher.seen(key);
        (seen.len() >= before.len() + DEVICES).then(|| seen[before.len()..].to_vec())
    });
    let republished: BTreeMap<String, u64> = after.into_iter().collect();
    assert_eq!(republished.len(), DEVICES);
    for (device, g) in &republished {
        let saw = max_seen.get(device).copied().unwrap_or(0);
        assert!(
            *g >= saw,
            "{device} saw generation {saw}, was republished {g}"
        );
        assert_eq!(
            Some(g),
            gens.get(device),
            "republished what the store holds"
        );
    }
    let partial = max_seen.values().filter(|g| **g == old + 1).count();
    eprintln!(
        "crash during {round}: store at {distinct:?}, {partial} devices had seen the new generation"
    );
}

#[test]
fn a_crash_in_the_middle_of_an_apply_keeps_one_fleet_and_republishes_newer_states() {
    let broker = Mosquitto::start();
    let mut hub = TestHub::with_external_broker(broker.port);
    hub.start();
    let watcher = Watcher::start(broker.port, hub.dir.path().join("desired.log"));
    std::thread::sleep(Duration::from_millis(300));
    let imported = import(&hub, DEVICES);
    assert_eq!(imported["registered"], DEVICES);
    let (code, _, err) = hub.apply("fleet.yaml", &deployment("one"));
    assert_eq!(code, 0, "{err}");
    let data = hub.dir.path().join("data");
    let key = drover_hub::keys::load_or_create_signing_key(&data)
        .expect("hub key")
        .verifying_key();
    wait_for(
        "every device at generation 2",
        Duration::from_secs(60),
        || {
            let seen = watcher.seen(&key);
            (seen.iter().filter(|(_, g)| *g == 2).count() == DEVICES).then_some(())
        },
    );
    crash_during(&mut hub, &watcher, &key, "two", 2, Crash::AfterMs(60));
    let now = *generations(&hub).values().next().expect("a device");
    crash_during(
        &mut hub,
        &watcher,
        &key,
        "three",
        now,
        Crash::AfterFirstPublish(now + 1),
    );
    // The crash after a publish came after the commit: the new fleet is the one kept.
    assert!(generations(&hub).values().all(|g| *g == now + 1));
}

#[test]
fn bulk_registration_and_dry_runs_from_the_cli() {
    let mut hub = TestHub::new();
    hub.start();
    // A bad line: nothing registered, the error names file and line.
    let bad = hub.dir.path().join("bad.csv");
    fs::write(&bad, "name,labels\nd-1,fleet=scale\nD_2,fleet=scale\n").expect("csv");
    let (code, _, err) = hub.cli(&["device", "import", &bad.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--out-dir DIR or -o json"),
        "credentials shown once: {err}"
    );
    let (code, _, err) = hub.cli(&["device", "import", &bad.display().to_string(), "-o", "json"]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.csv:3:1:"), "{err}");
    assert_eq!(hub.devices().as_array().expect("devices").len(), 0);
    // Good: 100 devices, configs written one file each, mode 0600.
    let out_dir = hub.dir.path().join("configs");
    let good = hub.dir.path().join("good.csv");
    let csv = (0..100).fold("name,labels\n".to_owned(), |a, i| {
        a + &format!("d-{i},fleet=scale;zone=z{}\n", i % 2)
    });
    fs::write(&good, csv).expect("csv");
    let (code, out, err) = hub.cli(&[
        "device",
        "import",
        &good.display().to_string(),
        "--out-dir",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("100 devices registered"), "{out}");
    // A config file in the way is never overwritten: the devices are registered, so every
    // credential is printed instead of lost.
    let more = hub.dir.path().join("more.csv");
    fs::write(&more, "name,labels\nx-1,fleet=scale\nx-2,fleet=scale\n").expect("csv");
    fs::write(out_dir.join("x-2.toml"), "old").expect("old file");
    let (code, out, err) = hub.cli(&[
        "device",
        "import",
        &more.display().to_string(),
        "--out-dir",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("2 devices WERE registered"), "{err}");
    let printed: Value = serde_json::from_str(&out).expect("credentials as JSON");
    assert_eq!(printed["devices"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        fs::read_to_string(out_dir.join("x-2.toml")).expect("old"),
        "old"
    );
    let cfg = fs::read_to_string(out_dir.join("d-7.toml")).expect("config");
    assert!(
        cfg.contains("device = \"d-7\"") && cfg.contains("credential = "),
        "{cfg}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(out_dir.join("d-7.toml"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The same again: already registered, nothing changes.
    let (code, _, err) = hub.cli(&[
        "device",
        "import",
        &good.display().to_string(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("already registered"), "{err}");
    // Dry run and diff: report, change nothing; diff's exit code says whether anything would.
    let path = hub.dir.path().join("dep.yaml");
    fs::write(&path, deployment("one").replace("fleet: scale", "zone: z1")).expect("yaml");
    let p = path.display().to_string();
    let (code, out, _) = hub.cli(&["apply", "-f", &p, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("deployment/fleet created (dry run)"), "{out}");
    assert!(out.contains("device/d-1 generation 2: +fleet"), "{out}");
    assert!(
        out.contains("50 devices would get a new desired state"),
        "{out}"
    );
    assert_eq!(hub.cli(&["diff", "-f", &p]).0, 1);
    assert!(
        generations(&hub).values().all(|g| *g == 1),
        "nothing was applied"
    );
    let (code, out, err) = hub.cli(&["apply", "-f", &p]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("50 devices got a new desired state"), "{out}");
    assert_eq!(hub.cli(&["diff", "-f", &p]).0, 0, "nothing left to change");
    let (code, _, err) = hub.cli(&["diff", "-f", "/nonexistent.yaml"]);
    assert_eq!(code, 2, "{err}");
}
