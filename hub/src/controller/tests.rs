//! Controller tests: a real store in a temporary folder, the outbox read back directly.

use std::path::Path;

use drover_protocol::auth::{seal_status, verify_desired};
use drover_protocol::{DesiredState, DeviceStatus, Phase, WorkloadStatus};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::*;

const KEY: [u8; 32] = [7; 32];

fn controller(dir: &Path) -> (Controller, UnboundedReceiver<Out>) {
    let store = Store::open(&dir.join("fleet.db")).unwrap();
    let settings = Settings {
        offline_after_ms: 90_000,
        device_broker: "hub:1883".to_owned(),
    };
    let (tx, rx) = unbounded_channel();
    let key = SigningKey::from_bytes(&KEY);
    let c = Controller::new(store, key, "hubcred".to_owned(), settings, tx).unwrap();
    (c, rx)
}

/// The desired states published since the last call, verified with the hub key.
fn published(rx: &mut UnboundedReceiver<Out>) -> Vec<DesiredState> {
    let vk = SigningKey::from_bytes(&KEY).verifying_key();
    let mut out = Vec::new();
    while let Ok(Out::Publish(p)) = rx.try_recv() {
        let device = p.topic.split('/').nth(3).unwrap();
        let name = Name::new(device).unwrap();
        out.push(verify_desired(&p.payload, &vk, &name, 0).unwrap());
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
    let p = published(&mut rx);
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
        published(&mut rx);
        c.apply(&[deployment("web", "sensor", "oci:/a")], 2)
            .unwrap();
        let p = published(&mut rx);
        assert_eq!(p.len(), 1, "only pi-1 changed");
        assert_eq!((p[0].device.as_str(), p[0].generation), ("pi-1", 2));
        // The same apply again changes nothing and publishes nothing.
        let r = c
            .apply(&[deployment("web", "sensor", "oci:/a")], 3)
            .unwrap();
        assert_eq!(r.results, ["deployment/web unchanged"]);
        assert!(published(&mut rx).is_empty());
        c.apply(&[deployment("web", "sensor", "oci:/b")], 4)
            .unwrap();
        assert_eq!(published(&mut rx)[0].generation, 3);
        c.delete(&[deployment("web", "sensor", "oci:/b")], 5)
            .unwrap();
        let p = published(&mut rx);
        assert_eq!((p[0].generation, p[0].workloads.len()), (4, 0));
        assert_eq!(generation(&c, "pi-2"), 1);
    }
    // Reopened: generations continue from the store, and an unchanged state is not bumped.
    let (mut c, mut rx) = controller(dir.path());
    c.resync(6).unwrap();
    assert!(published(&mut rx).is_empty());
    assert_eq!(generation(&c, "pi-1"), 4);
    c.apply(&[deployment("web", "sensor", "oci:/a")], 7)
        .unwrap();
    assert_eq!(published(&mut rx)[0].generation, 5);
    assert_eq!(c.all_desired().unwrap().len(), 2);
}

#[test]
fn relabelling_a_device_moves_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    c.add_device("pi-2", labels("other"), 1).unwrap();
    c.apply(&[deployment("web", "sensor", "oci:/a")], 2)
        .unwrap();
    published(&mut rx);
    let relabel = file(
        "dev.yaml",
        "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-2, labels: {role: sensor}}\n---\napiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-1, labels: {role: other}}\n",
    );
    c.apply(&[relabel], 3).unwrap();
    let p = published(&mut rx);
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
    published(&mut rx);
    let bad = file(
        "bad.yaml",
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {}\n  colour: red\n",
    );
    let err = c
        .apply(&[deployment("web", "sensor", "oci:/a"), bad], 2)
        .unwrap_err();
    assert!(err.to_string().starts_with("bad.yaml:6:3:"), "{err}");
    assert!(c.deployments(2).unwrap().is_empty());
    assert!(published(&mut rx).is_empty());
    let unknown = file(
        "d.yaml",
        "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: pi-9}\n",
    );
    assert!(c.apply(&[unknown], 3).is_err());
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
    c.apply(&[deployment("web", "sensor", "oci:/a")], 2)
        .unwrap();
    published(&mut rx);
    let good = seal_status(&status("pi-1", 2), cred1.as_bytes()).unwrap();
    let t1 = "drover/v1/dev/pi-1/status";
    // Another device's credential, another device's status, garbage, an unknown device.
    c.ingest(
        t1,
        &seal_status(&status("pi-1", 2), cred2.as_bytes()).unwrap(),
        10,
    )
    .unwrap();
    c.ingest(
        t1,
        &seal_status(&status("pi-2", 2), cred1.as_bytes()).unwrap(),
        10,
    )
    .unwrap();
    c.ingest(t1, b"garbage", 10).unwrap();
    c.ingest("drover/v1/dev/pi-7/status", &good, 10).unwrap();
    c.ingest("drover/v1/dev/pi-1/online", b"maybe", 10).unwrap();
    let stats = c.stats().unwrap();
    assert_eq!(stats["status_rejected_bad_mac"], 1);
    assert_eq!(stats["status_rejected_wrong_device"], 1);
    assert_eq!(stats["status_rejected_malformed"], 1);
    assert_eq!(stats["status_rejected_unknown_device"], 1);
    assert_eq!(stats["presence_rejected_malformed"], 1);
    assert!(!c.devices(10).unwrap()[0].online);
    c.ingest("drover/v1/dev/pi-1/online", b"online", 10)
        .unwrap();
    c.ingest(t1, &good, 20).unwrap();
    let v = &c.devices(30).unwrap()[0];
    assert!(v.online && v.in_sync, "{v:?}");
    assert_eq!((v.ready, v.total, v.observed_generation), (1, 1, 2));
    assert!(
        !c.devices(20 + 90_001).unwrap()[0].online,
        "silent too long"
    );
    c.ingest("drover/v1/dev/pi-1/online", b"offline", 40)
        .unwrap();
    assert!(!c.devices(41).unwrap()[0].online, "last will");
    assert_eq!(c.stats().unwrap()["status_accepted"], 1);
}
