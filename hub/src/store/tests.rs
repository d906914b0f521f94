//! Store tests on a real SQLite file in a temporary folder.

use std::collections::BTreeMap;

use drover_protocol::DeviceStatus;

use super::*;
use crate::fleet::{Object, parse_objects};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("fleet.db")).unwrap();
    (dir, store)
}

fn device(name: &str) -> DeviceRow {
    DeviceRow {
        name: name.to_owned(),
        labels: BTreeMap::from([("role".to_owned(), "sensor".to_owned())]),
        credential: format!("cred-{name}"),
        created_ms: 7,
    }
}

#[test]
fn devices_are_inserted_once_and_relabelled() {
    let (_d, s) = open();
    assert!(s.insert_device(&device("pi-1")).unwrap());
    assert!(!s.insert_device(&device("pi-1")).unwrap());
    let labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
    assert!(s.set_labels("pi-1", &labels).unwrap());
    assert!(!s.set_labels("pi-9", &labels).unwrap());
    let all = s.devices().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].labels, labels);
    assert_eq!(all[0].credential, "cred-pi-1");
}

#[test]
fn deployments_round_trip_typed_and_take_their_placement_along() {
    let (_d, s) = open();
    let text = "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {role: sensor}}\n  template:\n    spec:\n      containers: [{name: main, image: oci:/x}]\n";
    let Object::Deployment(dep) = parse_objects("w.yaml", text).unwrap().remove(0) else {
        panic!("a Deployment");
    };
    let row = DeploymentRow {
        deployment: dep,
        source: "w.yaml".to_owned(),
        updated_ms: 3,
    };
    s.put_deployment(&row).unwrap();
    assert_eq!(s.deployments().unwrap(), vec![row]);
    s.place("web", "pi-1").unwrap();
    s.place("web", "pi-2").unwrap();
    s.unplace("web", "pi-2").unwrap();
    assert_eq!(s.placement().unwrap()["web"].len(), 1);
    assert!(s.delete_deployment("web").unwrap());
    assert!(!s.delete_deployment("web").unwrap());
    assert!(s.deployments().unwrap().is_empty());
    assert!(s.placement().unwrap().is_empty(), "placement goes with it");
}

#[test]
fn commits_are_counted_and_a_read_connection_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let s = Store::open(&path).unwrap();
    let r = Store::open_read(&path).unwrap();
    s.atomically(|s| {
        s.insert_device(&device("pi-1"))?;
        s.insert_device(&device("pi-2"))
    })
    .unwrap();
    s.durably(|s| s.insert_device(&device("pi-3"))).unwrap();
    assert_eq!(s.commits(), 2);
    assert_eq!(r.devices().unwrap().len(), 3);
    assert!(r.insert_device(&device("pi-4")).is_err(), "read-only");
}

#[test]
fn desired_rows_and_statuses_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let row = DesiredRow {
        generation: 4,
        workloads: vec![1, 2],
        payload: vec![3],
    };
    let status = DeviceStatus {
        device: drover_protocol::Name::new("pi-1").unwrap(),
        observed_generation: 4,
        time_ms: 9,
        workloads: vec![],
        capacity: Default::default(),
    };
    {
        let s = Store::open(&path).unwrap();
        s.put_desired("pi-1", &row, 1).unwrap();
        s.set_presence("pi-1", true).unwrap();
        s.put_status(&status, 100).unwrap();
        s.bump_counter("x", 2).unwrap();
        s.bump_counter("x", 3).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.desired("pi-1").unwrap(), Some(row.clone()));
    assert_eq!(s.all_desired().unwrap(), vec![("pi-1".to_owned(), row)]);
    let st = s.status("pi-1").unwrap().unwrap();
    assert_eq!(st.presence, Some(true));
    assert_eq!(st.last_seen_ms, 100);
    assert_eq!(st.status, Some(status));
    assert_eq!(s.counters().unwrap()["x"], 5);
    let journal: String = s
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn a_failed_transaction_leaves_nothing_behind() {
    let (_d, s) = open();
    let r: Result<(), StoreError> = s.atomically(|s| {
        s.insert_device(&device("pi-1"))?;
        Err(StoreError::Sql(rusqlite::Error::InvalidQuery))
    });
    assert!(r.is_err());
    assert!(s.devices().unwrap().is_empty());
    s.atomically(|s| s.insert_device(&device("pi-2"))).unwrap();
    assert_eq!(s.devices().unwrap().len(), 1);
}

#[test]
fn events_come_back_per_object_oldest_first_and_limited() {
    let (_d, s) = open();
    for i in 0..5 {
        s.add_event(&Event::device(
            i,
            "pi-1",
            EventReason::Online,
            format!("e{i}"),
        ))
        .unwrap();
    }
    s.add_event(&Event::device(9, "pi-2", EventReason::Offline, "other"))
        .unwrap();
    let ev = s.events(ObjectKind::Device, "pi-1", 3).unwrap();
    let msgs: Vec<&str> = ev.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, ["e2", "e3", "e4"]);
    assert!(ev.iter().all(|e| e.reason == EventReason::Online));
}

#[test]
fn deployments_stored_before_revisions_become_revision_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let text = "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers: [{name: main, image: oci:/x}]\n";
    let Object::Deployment(dep) = parse_objects("w.yaml", text).unwrap().remove(0) else {
        panic!("a Deployment");
    };
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch("CREATE TABLE deployments (name TEXT PRIMARY KEY, spec TEXT NOT NULL, source TEXT NOT NULL, updated_ms INTEGER NOT NULL);").unwrap();
        let spec = serde_json::to_string(&dep).unwrap();
        old.execute(
            "INSERT INTO deployments VALUES ('web', ?1, 'w.yaml', 5)",
            [spec],
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let revs = s.revisions("web").unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(
        (revs[0].revision, revs[0].template.clone()),
        (1, dep.template.clone())
    );
    assert_eq!(s.rollout_states().unwrap()["web"].revision, 1);
    // Putting the Deployment again keeps its revision.
    let row = DeploymentRow {
        deployment: dep,
        source: "w.yaml".to_owned(),
        updated_ms: 6,
    };
    s.put_deployment(&row).unwrap();
    assert_eq!(s.rollout_states().unwrap()["web"].revision, 1);
    assert!(s.delete_deployment("web").unwrap());
    assert!(
        s.revisions("web").unwrap().is_empty(),
        "revisions go with it"
    );
}
