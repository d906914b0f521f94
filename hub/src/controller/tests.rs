//! Controller tests: a real store in a temporary folder, the outbox read back directly.

use std::path::Path;

use std::collections::BTreeMap;

use drover_protocol::auth::seal_status;
use drover_protocol::keys::SealSecret;
use drover_protocol::sealed::open_desired;
use drover_protocol::{DesiredState, DeviceStatus, Name, Phase, WorkloadStatus};
use ed25519_dalek::SigningKey;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::*;
use crate::store::Store;
use crate::views::FileText;

#[path = "rollout_tests.rs"]
mod rollout;

#[path = "retained_tests.rs"]
mod retained;

#[path = "freshness_tests.rs"]
mod freshness;

#[path = "config_objects_tests.rs"]
mod config_objects;

const KEY: [u8; 32] = [7; 32];

fn settings() -> Settings {
    Settings {
        offline_after_ms: 90_000,
        device_broker: "hub:1883".to_owned(),
        embedded_broker: true,
        device_ca: None,
        policy: Default::default(),
    }
}

fn controller(dir: &Path) -> (Controller, UnboundedReceiver<Out>) {
    let store = Store::open(&dir.join("fleet.db")).unwrap();
    let (tx, rx) = unbounded_channel();
    let key = SigningKey::from_bytes(&KEY);
    let c = Controller::new(store, key, "hubcred".to_owned(), settings(), tx).unwrap();
    (c, rx)
}

fn reader(dir: &Path, c: &Controller) -> ReadSide {
    let store = Store::open_read(&dir.join("fleet.db")).unwrap();
    ReadSide::new(store, settings(), c.warnings(), c.metrics())
}

fn ingest(c: &mut Controller, topic: &str, payload: &[u8], at_ms: u64) {
    c.ingest_batch(&[(topic.to_owned(), payload.to_vec(), at_ms)], at_ms);
}

/// The desired states published since the last call, verified with the hub key and
/// opened with each device's sealing key (derived from its credential in `c`'s store).
fn published(rx: &mut UnboundedReceiver<Out>, c: &Controller) -> Vec<DesiredState> {
    let vk = SigningKey::from_bytes(&KEY).verifying_key();
    let creds: std::collections::HashMap<String, String> = c
        .store
        .devices()
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.credential))
        .collect();
    let mut out = Vec::new();
    while let Ok(Out::Publish(p)) = rx.try_recv() {
        let device = p.topic.split('/').nth(3).unwrap();
        let name = Name::new(device).unwrap();
        let seal = SealSecret::derive(creds[device].as_bytes());
        out.push(open_desired(&p.payload, &vk, &name, 0, &seal).unwrap());
    }
    out
}

fn file(name: &str, text: &str) -> FileText {
    FileText {
        file: name.to_owned(),
        text: text.to_owned(),
    }
}

fn deployment(name: &str, role: &str, image: &str) -> FileText {
    file(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector:\n    matchLabels: {{role: {role}}}\n  template:\n    spec:\n      containers:\n        - name: main\n          image: {image}\n"
        ),
    )
}

fn labels(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("role".to_owned(), role.to_owned())])
}

fn generation(c: &Controller, device: &str) -> u64 {
    c.store.desired(device).unwrap().map_or(0, |r| r.generation)
}

#[test]
fn a_new_device_gets_generation_1_with_no_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let added = c.add_device("pi-1", labels("sensor"), 1).unwrap();
    assert_eq!(added.credential.len(), 43);
    assert!(added.config.contains("broker = \"hub:1883\""));
    let p = published(&mut rx, &c);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].generation, p[0].workloads.len()), (1, 0));
    assert!(matches!(
        c.add_device("pi-1", labels("x"), 2),
        Err(ControllerError::Exists(_))
    ));
    assert!(c.add_device("drover-hub-2", labels("x"), 2).is_err());
}

#[test]
fn generations_bump_only_on_real_change_and_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut c, mut rx) = controller(dir.path());
        c.add_device("pi-1", labels("sensor"), 1).unwrap();
        c.add_device("pi-2", labels("other"), 1).unwrap();
        published(&mut rx, &c);
        c.apply(&[deployment("web", "sensor", "oci:/a")], false, 2)
            .unwrap();
        let p = published(&mut rx, &c);
        assert_eq!(p.len(), 1, "only pi-1 changed");
        assert_eq!((p[0].device.as_str(), p[0].generation), ("pi-1", 2));
        // The same apply again changes nothing and publishes nothing.
        let r = c
            .apply(&[deployment("web", "sensor", "oci:/a")], false, 3)
            .unwrap();
        assert_eq!(r.results, ["deployment/web unchanged"]);
        assert!(published(&mut rx, &c).is_empty());
        c.apply(&[deployment("web", "sensor", "oci:/b")], false, 4)
            .unwrap();
        assert_eq!(published(&mut rx, &c)[0].generation, 3);
        c.delete(&[deployment("web", "sensor", "oci:/b")], false, 5)
            .unwrap();
        let p = published(&mut rx, &c);
        assert_eq!((p[0].generation, p[0].workloads.len()), (4, 0));
        assert_eq!(generation(&c, "pi-2"), 1);
    }
    // Reopened: generations continue from the store, and an unchanged state is not bumped.
    let (mut c, mut rx) = controller(dir.path());
    c.resync(6).unwrap();
    assert!(published(&mut rx, &c).is_empty());
    assert_eq!(generation(&c, "pi-1"), 4);
    c.apply(&[deployment("web", "sensor", "oci:/a")], false, 7)
        .unwrap();
    assert_eq!(published(&mut rx, &c)[0].generation, 5);
    assert_eq!(c.payloads.len(), 2);
}

#[test]
fn relabelling_a_device_moves_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    c.add_device("pi-2", labels("other"), 1).unwrap();
    c.apply(&[deployment("web", "sensor", "oci:/a")], false, 2)
        .unwrap();
    published(&mut rx, &c);
    let relabel = file(
        "dev.yaml",
        "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-2, labels: {role: sensor}}\n---\napiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-1, labels: {role: other}}\n",
    );
    c.apply(&[relabel], false, 3).unwrap();
    let p = published(&mut rx, &c);
    let on: Vec<(&str, usize)> = p
        .iter()
        .map(|d| (d.device.as_str(), d.workloads.len()))
        .collect();
    assert_eq!(on, [("pi-1", 0), ("pi-2", 1)]);
}

#[test]
fn a_bad_file_in_the_set_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    published(&mut rx, &c);
    let bad = file(
        "bad.yaml",
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {}\n  colour: red\n",
    );
    let err = c
        .apply(&[deployment("web", "sensor", "oci:/a"), bad], false, 2)
        .unwrap_err();
    assert!(err.to_string().starts_with("bad.yaml:6:3:"), "{err}");
    assert!(reader(dir.path(), &c).deployments(2).unwrap().is_empty());
    assert!(published(&mut rx, &c).is_empty());
    let unknown = file(
        "d.yaml",
        "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-9}\n",
    );
    assert!(c.apply(&[unknown], false, 3).is_err());
}

/// A Deployment on `role: sensor` devices that starts after `after`.
fn dependent(name: &str, after: &str) -> FileText {
    file(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector:\n    matchLabels: {{role: sensor}}\n  template:\n    spec:\n      dependsOn: [{{workload: {after}, condition: healthy}}]\n      containers:\n        - name: main\n          image: oci:/a\n"
        ),
    )
}

#[test]
fn a_depends_on_cycle_across_deployments_and_applies_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    published(&mut rx, &c);
    // In one apply, across two files.
    let err = c
        .apply(&[dependent("a", "b"), dependent("b", "a")], false, 2)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a.yaml:9:19: dependsOn forms a cycle: a → b → a"
    );
    assert!(reader(dir.path(), &c).deployments(2).unwrap().is_empty());
    // Across applies: b is stored, then a closes the cycle; b alone was fine.
    c.apply(&[dependent("b", "a")], false, 3).unwrap();
    let err = c.apply(&[dependent("a", "b")], false, 4).unwrap_err();
    assert!(
        err.to_string()
            .contains("dependsOn forms a cycle: a → b → a"),
        "{err}"
    );
    assert_eq!(reader(dir.path(), &c).deployments(4).unwrap().len(), 1);
    // A chain is fine.
    c.apply(&[dependent("a", "c")], false, 5).unwrap();
}

fn status(device: &str, generation: u64) -> DeviceStatus {
    DeviceStatus {
        device: Name::new(device).unwrap(),
        observed_generation: generation,
        time_ms: 5,
        workloads: vec![WorkloadStatus {
            name: Name::new("web").unwrap(),
            phase: Phase::Running,
            restarts: 1,
            containers: vec![],
            last_error: None,
            reason: None,
            revision: 0,
            rolled_back: None,
        }],
        capacity: Default::default(),
    }
}

#[test]
fn statuses_are_checked_against_the_topic_device_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let cred1 = c
        .add_device("pi-1", labels("sensor"), 1)
        .unwrap()
        .credential;
    let cred2 = c.add_device("pi-2", labels("x"), 1).unwrap().credential;
    c.apply(&[deployment("web", "sensor", "oci:/a")], false, 2)
        .unwrap();
    published(&mut rx, &c);
    let good = seal_status(&status("pi-1", 2), cred1.as_bytes()).unwrap();
    let t1 = "drover/v1/dev/pi-1/status";
    // Another device's credential, another device's status, garbage, an unknown device.
    ingest(
        &mut c,
        t1,
        &seal_status(&status("pi-1", 2), cred2.as_bytes()).unwrap(),
        10,
    );
    ingest(
        &mut c,
        t1,
        &seal_status(&status("pi-2", 2), cred1.as_bytes()).unwrap(),
        10,
    );
    ingest(&mut c, t1, b"garbage", 10);
    ingest(&mut c, "drover/v1/dev/pi-7/status", &good, 10);
    ingest(&mut c, "drover/v1/dev/pi-1/online", b"maybe", 10);
    let r = reader(dir.path(), &c);
    let stats = r.stats().unwrap();
    assert_eq!(stats["status_rejected_bad_mac"], 1);
    assert_eq!(stats["status_rejected_wrong_device"], 1);
    assert_eq!(stats["status_rejected_malformed"], 1);
    assert_eq!(stats["status_rejected_unknown_device"], 1);
    assert_eq!(stats["presence_rejected_malformed"], 1);
    assert!(!r.devices(10).unwrap()[0].online);
    ingest(&mut c, "drover/v1/dev/pi-1/online", b"online", 10);
    ingest(&mut c, t1, &good, 20);
    let v = &r.devices(30).unwrap()[0];
    assert!(v.online && v.in_sync, "{v:?}");
    assert_eq!((v.ready, v.total, v.observed_generation), (1, 1, 2));
    assert!(
        !r.devices(20 + 90_001).unwrap()[0].online,
        "silent too long"
    );
    ingest(&mut c, "drover/v1/dev/pi-1/online", b"offline", 40);
    assert!(!r.devices(41).unwrap()[0].online, "last will");
    assert_eq!(r.stats().unwrap()["status_accepted"], 1);
}

#[test]
fn a_burst_of_statuses_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let csv = (0..200).fold("name,labels\n".to_owned(), |acc, i| {
        acc + &format!("pi-{i},role=sensor\n")
    });
    let added = c.import_devices(&file("fleet.csv", &csv), 1).unwrap();
    assert_eq!(added.len(), 200);
    assert_eq!(
        published(&mut rx, &c).len(),
        200,
        "every new device gets generation 1"
    );
    let burst: Vec<(String, Vec<u8>, u64)> = added
        .iter()
        .map(|d| {
            let st = seal_status(&status(&d.name, 1), d.credential.as_bytes()).unwrap();
            (format!("drover/v1/dev/{}/status", d.name), st, 10)
        })
        .collect();
    let before = c.store.commits();
    c.ingest_batch(&burst, 10);
    assert_eq!(
        c.store.commits() - before,
        1,
        "one transaction for the whole burst"
    );
    let r = reader(dir.path(), &c);
    assert_eq!(r.stats().unwrap()["status_accepted"], 200);
    assert!(r.devices(11).unwrap().iter().all(|d| d.online));
    assert!(
        published(&mut rx, &c).is_empty(),
        "no capacity change that matters: no plan"
    );
}

#[test]
fn an_import_is_all_or_nothing_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let bad = "name,labels\npi-1,role=sensor\npi-2,role=sensor;zone\n";
    let err = c.import_devices(&file("f.csv", bad), 1).unwrap_err();
    assert!(err.to_string().starts_with("f.csv:3:"), "{err}");
    let labels_twice = "name,labels\npi-1,a=b;a=c\n";
    let err = c
        .import_devices(&file("f.csv", labels_twice), 1)
        .unwrap_err();
    assert!(
        err.to_string().contains("label \"a\" is given twice"),
        "{err}"
    );
    let twice = "name,labels\npi-1,\npi-1,a=b\n";
    let err = c.import_devices(&file("f.csv", twice), 1).unwrap_err();
    assert!(
        err.to_string().contains("listed twice (first on line 2)"),
        "{err}"
    );
    let err = c
        .import_devices(&file("f.csv", "nom,labels\npi-1,\n"), 1)
        .unwrap_err();
    assert!(
        err.to_string().contains("expected the header line"),
        "{err}"
    );
    assert!(
        c.import_devices(&file("f.csv", "name,labels\n"), 1)
            .is_err()
    );
    assert!(c.snapshot.devices.is_empty() && published(&mut rx, &c).is_empty());
    c.add_device("pi-1", labels("x"), 1).unwrap();
    let yaml = "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-2, labels: {role: sensor}}\n---\napiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-1}\n";
    assert!(matches!(
        c.import_devices(&file("f.yaml", yaml), 2),
        Err(ControllerError::Exists(n)) if n == "pi-1"
    ));
    assert_eq!(
        c.snapshot.devices.len(),
        1,
        "pi-2 was not registered either"
    );
    let yaml = yaml.split("---").next().unwrap();
    assert_eq!(c.import_devices(&file("f.yaml", yaml), 2).unwrap().len(), 1);
    assert_eq!(
        c.snapshot.devices[&Name::new("pi-2").unwrap()].labels,
        std::sync::Arc::new(labels("sensor"))
    );
}

#[test]
fn a_dry_run_reports_the_devices_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    c.add_device("pi-2", labels("other"), 1).unwrap();
    c.apply(&[deployment("web", "sensor", "oci:/a")], false, 2)
        .unwrap();
    published(&mut rx, &c);
    let commits = c.store.commits();
    let r = c
        .apply(
            &[
                deployment("web", "sensor", "oci:/b"),
                deployment("db", "other", "oci:/d"),
            ],
            true,
            3,
        )
        .unwrap();
    assert!(r.dry_run);
    assert_eq!(
        r.results,
        ["deployment/web configured", "deployment/db created"]
    );
    let summary: Vec<(&str, u64, &[String], &[String])> = r
        .devices
        .iter()
        .map(|d| {
            (
                d.device.as_str(),
                d.generation,
                &d.diff.added[..],
                &d.diff.changed[..],
            )
        })
        .collect();
    let (web, db) = (["web".to_owned()], ["db".to_owned()]);
    assert_eq!(
        summary,
        [
            ("pi-1", 3, &[][..], &web[..]),
            ("pi-2", 2, &db[..], &[][..])
        ]
    );
    assert_eq!(c.store.commits(), commits, "nothing written");
    assert!(published(&mut rx, &c).is_empty());
    assert_eq!(generation(&c, "pi-1"), 2);
    let r = c
        .delete(&[deployment("web", "sensor", "oci:/a")], true, 4)
        .unwrap();
    assert_eq!(r.devices[0].diff.removed, ["web"]);
    assert_eq!(c.snapshot.deployments.len(), 1);
}

#[test]
fn an_oversize_desired_state_is_refused_naming_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    published(&mut rx, &c);
    let big = "x".repeat(100_000);
    let text = |name: &str| {
        format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector:\n    matchLabels: {{role: sensor}}\n  template:\n    spec:\n      containers:\n        - name: main\n          image: oci:/a\n          env: [{{name: BIG, value: {big}}}]\n"
        )
    };
    c.apply(&[file("a.yaml", &text("a"))], false, 2).unwrap();
    published(&mut rx, &c);
    let err = c
        .apply(
            &[file("b.yaml", &text("b")), file("c.yaml", &text("c"))],
            false,
            3,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("desired state for device pi-1 would be"),
        "{err}"
    );
    assert!(published(&mut rx, &c).is_empty());
    assert_eq!(c.snapshot.deployments.len(), 1, "nothing applied");
    let dry = c.apply(
        &[file("b.yaml", &text("b")), file("c.yaml", &text("c"))],
        true,
        3,
    );
    assert!(dry.is_err(), "a dry run refuses what apply refuses");
    assert_eq!(generation(&c, "pi-1"), 2);
}

#[test]
fn an_unregistered_device_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = controller(dir.path());
    let unknown = file(
        "d.yaml",
        "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-9}\n",
    );
    let err = c.apply(&[unknown], false, 3).unwrap_err();
    assert!(
        err.to_string().contains("\"pi-9\" is not registered"),
        "{err}"
    );
    assert!(err.to_string().starts_with("d.yaml:3:"), "located: {err}");
}

#[test]
fn a_capacity_change_replans_only_under_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let cred = c
        .add_device("pi-1", labels("sensor"), 1)
        .unwrap()
        .credential;
    c.apply(&[deployment("web", "sensor", "oci:/a")], false, 2)
        .unwrap();
    published(&mut rx, &c);
    let mut st = status("pi-1", 2);
    st.capacity.memory_bytes = 1 << 30;
    let t = "drover/v1/dev/pi-1/status";
    let before = c.metrics.get(&c.metrics.transactions);
    ingest(&mut c, t, &seal_status(&st, cred.as_bytes()).unwrap(), 10);
    assert_eq!(
        c.metrics.get(&c.metrics.transactions) - before,
        1,
        "no plan committed"
    );
}

#[test]
fn hub_images_are_pinned_to_their_digest_at_apply_and_a_moved_tag_needs_a_new_apply() {
    use crate::registry::testoci;
    let dir = tempfile::tempdir().unwrap();
    let registry =
        std::sync::Arc::new(crate::registry::Registry::open(&dir.path().join("reg")).unwrap());
    let import = |text: &str| {
        let layout = dir.path().join(format!("layout-{text}"));
        let layer = testoci::LayerBuilder::new()
            .add_file("hello.txt", text.as_bytes(), 0o644)
            .finish();
        testoci::write_layout(&layout, "1.0", &[layer], serde_json::json!({})).unwrap();
        let req = crate::views::ImportRequest {
            path: layout.display().to_string(),
            name: Some("sensor".to_owned()),
            tag: None,
        };
        registry.import(&req).unwrap();
        registry.resolve("sensor", "1.0").unwrap()
    };
    let (c, mut rx) = controller(dir.path());
    let mut c = c.with_registry(registry.clone());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    published(&mut rx, &c);
    // Not imported yet: refused at the image, nothing changes.
    let err = c
        .apply(&[deployment("web", "sensor", "hub:sensor:1.0")], false, 2)
        .unwrap_err();
    assert!(err.to_string().starts_with("web.yaml:11:18:"), "{err}");
    assert!(
        err.to_string().contains("not in the hub's registry"),
        "{err}"
    );
    let first = import("one");
    c.apply(&[deployment("web", "sensor", "hub:sensor:1.0")], false, 3)
        .unwrap();
    let p = published(&mut rx, &c);
    let image = p[0].workloads[0].containers[0].image.as_str().to_owned();
    assert_eq!(
        image,
        format!("hub:sensor@{}", first.as_str()),
        "the digest is signed"
    );
    // The tag moves: the running fleet does not, until the next apply.
    let second = import("two");
    assert_ne!(first, second);
    assert!(published(&mut rx, &c).is_empty());
    c.apply(&[deployment("web", "sensor", "hub:sensor:1.0")], false, 4)
        .unwrap();
    let p = published(&mut rx, &c);
    let image = p[0].workloads[0].containers[0].image.as_str().to_owned();
    assert_eq!(image, format!("hub:sensor@{}", second.as_str()));
}

#[test]
fn a_batch_of_plain_heartbeats_does_not_ask_for_a_rollout_step() {
    // Found by the 1,000-device bench: every status batch stepped every active rollout
    // over every device (O(devices) per heartbeat batch: 41-46 % of a core at 10,000).
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = controller(dir.path());
    let cred = c.add_device("pi-1", labels("x"), 1).unwrap().credential;
    let topic = "drover/v1/dev/pi-1/status".to_owned();
    let msg = |st: &DeviceStatus| (topic.clone(), seal_status(st, cred.as_bytes()).unwrap(), 10);
    assert!(
        c.ingest_batch(&[msg(&status("pi-1", 1))], 10),
        "first status"
    );
    assert!(
        !c.ingest_batch(&[msg(&status("pi-1", 1))], 20),
        "the same status again: a heartbeat"
    );
    let mut changed = status("pi-1", 1);
    changed.workloads[0].revision = 2;
    assert!(
        c.ingest_batch(&[msg(&changed)], 30),
        "a new revision reported"
    );
    let online = (
        "drover/v1/dev/pi-1/online".to_owned(),
        b"offline".to_vec(),
        40,
    );
    assert!(c.ingest_batch(&[online], 40), "presence changed");
}
