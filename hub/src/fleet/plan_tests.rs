//! Fleet planner tests on hand-built snapshots (Deployments from YAML, as the hub parses
//! them), like the agent's `reconcile/plan_tests.rs`.

use std::collections::BTreeMap;

use drover_protocol::{Capacity, Name};

use super::plan::{DeviceChange, PlanEvent, diff_workloads, plan};
use super::snapshot::{DesiredEntry, DeviceEntry, FleetSnapshot};
use super::{Object, parse_objects};

const NOW: u64 = 1_000_000;

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn deployment(name: &str, selector: &str, extra: &str) -> super::Deployment {
    let text = format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{{selector}}}}}\n{extra}  template:\n    spec:\n      containers:\n        - name: main\n          image: oci:/images/{name}\n          resources: {{memory: 64Mi}}\n"
    );
    match parse_objects("t.yaml", &text).expect("valid").remove(0) {
        Object::Deployment(d) => d,
        Object::Device(_) | Object::Config(_) => unreachable!("a Deployment"),
    }
}

fn device(labels: &[(&str, &str)], memory_mib: u64) -> DeviceEntry {
    DeviceEntry {
        labels: std::sync::Arc::new(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        capacity: Capacity {
            memory_bytes: memory_mib << 20,
            ..Capacity::default()
        },
        last_seen_ms: NOW - 1_000,
        reported: Default::default(),
        presence: Some(true),
        observed_generation: 0,
    }
}

/// A fleet of `n` devices `pi-0..` labelled `role: sensor`, plus the given Deployments.
fn fleet(n: usize, deployments: Vec<super::Deployment>) -> FleetSnapshot {
    let mut s = FleetSnapshot {
        offline_after_ms: 90_000,
        ..FleetSnapshot::default()
    };
    for i in 0..n {
        s.devices.insert(
            name(&format!("pi-{i}")),
            device(&[("role", "sensor")], 1024),
        );
    }
    for d in deployments {
        s.deployments.insert(d.name.clone(), d);
    }
    s
}

/// Folds a plan into the snapshot, as the controller does after committing it.
fn commit(s: &mut FleetSnapshot) -> BTreeMap<Name, DeviceChange> {
    let p = plan(s, NOW);
    s.placement = p.placement.clone();
    for (dev, ch) in &p.changes {
        s.desired.insert(
            dev.clone(),
            DesiredEntry {
                generation: ch.generation,
                workloads: ch.workloads.clone(),
            },
        );
    }
    p.changes
}

#[test]
fn a_new_fleet_gives_every_device_generation_1() {
    let mut s = fleet(3, vec![deployment("web", "role: sensor", "")]);
    let changes = commit(&mut s);
    assert_eq!(changes.len(), 3);
    assert!(
        changes
            .values()
            .all(|c| c.generation == 1 && c.workloads.len() == 1)
    );
}

#[test]
fn an_unchanged_fleet_changes_no_device() {
    let mut s = fleet(
        50,
        vec![deployment("web", "role: sensor", "  replicas: 7\n")],
    );
    commit(&mut s);
    let p = plan(&s, NOW + 5_000);
    assert!(p.changes.is_empty(), "{:?}", p.changes.keys());
    assert!(p.events.is_empty());
    assert!(p.is_empty(&s));
}

#[test]
fn one_label_change_moves_exactly_the_affected_replica() {
    let mut s = fleet(
        10,
        vec![deployment("web", "role: sensor", "  replicas: 3\n")],
    );
    commit(&mut s);
    let on: Vec<Name> = s.placement[&name("web")].iter().cloned().collect();
    let moved = on[1].clone();
    s.devices.get_mut(&moved).expect("placed").labels =
        std::sync::Arc::new(BTreeMap::from([("role".to_owned(), "other".to_owned())]));
    let p = plan(&s, NOW);
    // The relabelled device loses the replica, one new device gets it; nobody else changes.
    assert_eq!(p.changes.len(), 2, "{:?}", p.changes.keys());
    assert!(p.changes[&moved].workloads.is_empty());
    assert_eq!(p.changes[&moved].generation, 2);
    let gained: Vec<&Name> = p.changes.keys().filter(|d| **d != moved).collect();
    assert!(!on.contains(gained[0]));
    assert_eq!(p.placement[&name("web")].len(), 3);
    assert!(p.events.contains(&PlanEvent::Unplaced {
        deployment: name("web"),
        device: moved,
    }));
}

#[test]
fn a_daemon_deployment_follows_labels_exactly() {
    let mut s = fleet(4, vec![deployment("web", "role: sensor", "")]);
    commit(&mut s);
    s.devices
        .insert(name("pi-9"), device(&[("role", "sensor")], 512));
    let p = plan(&s, NOW);
    assert_eq!(p.changes.keys().collect::<Vec<_>>(), [&name("pi-9")]);
    assert_eq!(p.changes[&name("pi-9")].generation, 1);
}

#[test]
fn spread_and_binpack_place_as_before() {
    // Spread: the device with the fewest workloads first (pi-0 already runs "a").
    let mut s = fleet(
        2,
        vec![
            deployment("a", "role: sensor", "  replicas: 1\n"),
            deployment("b", "role: sensor", "  replicas: 1\n"),
        ],
    );
    commit(&mut s);
    assert_eq!(s.placement[&name("a")].len(), 1);
    assert_ne!(s.placement[&name("a")], s.placement[&name("b")]);
    // Binpack: the fullest device that still fits.
    let mut s = fleet(
        3,
        vec![
            deployment("a", "role: sensor", "  replicas: 1\n"),
            deployment("b", "role: sensor", "  replicas: 1\n  placement: binpack\n"),
        ],
    );
    commit(&mut s);
    assert_eq!(s.placement[&name("a")], s.placement[&name("b")]);
}

#[test]
fn a_capacity_change_without_replicas_changes_nothing() {
    let mut s = fleet(5, vec![deployment("web", "role: sensor", "")]);
    commit(&mut s);
    let pi = name("pi-2");
    s.devices
        .get_mut(&pi)
        .expect("device")
        .capacity
        .memory_bytes = 1 << 20;
    assert!(!s.capacity_matters(&pi));
    assert!(plan(&s, NOW).changes.is_empty());
}

#[test]
fn a_capacity_change_under_replicas_matters_but_keeps_placement() {
    let mut s = fleet(
        5,
        vec![deployment("web", "role: sensor", "  replicas: 2\n")],
    );
    commit(&mut s);
    let pi = name("pi-2");
    assert!(s.capacity_matters(&pi));
    s.devices
        .get_mut(&pi)
        .expect("device")
        .capacity
        .memory_bytes = 2048 << 20;
    // Stable placement: a bigger device does not pull replicas over.
    assert!(plan(&s, NOW).changes.is_empty());
}

#[test]
fn offline_devices_are_not_chosen_for_new_replicas() {
    let mut s = fleet(3, vec![]);
    for d in ["pi-0", "pi-1"] {
        s.devices.get_mut(&name(d)).expect("device").presence = Some(false);
    }
    s.deployments.insert(
        name("web"),
        deployment("web", "role: sensor", "  replicas: 1\n"),
    );
    let p = plan(&s, NOW);
    assert_eq!(
        p.placement[&name("web")].iter().collect::<Vec<_>>(),
        [&name("pi-2")]
    );
}

#[test]
fn removing_a_deployment_empties_its_devices() {
    let mut s = fleet(2, vec![deployment("web", "role: sensor", "")]);
    commit(&mut s);
    s.deployments.clear();
    let p = plan(&s, NOW);
    assert_eq!(p.changes.len(), 2);
    assert!(
        p.changes
            .values()
            .all(|c| c.workloads.is_empty() && c.generation == 2)
    );
    assert_eq!(p.events.len(), 2);
}

#[test]
fn workload_diff_names_added_changed_and_removed() {
    let a = deployment("a", "role: sensor", "").template;
    let b = deployment("b", "role: sensor", "").template;
    let mut b2 = b.clone();
    b2.stop_grace_ms += 1;
    let c = deployment("c", "role: sensor", "").template;
    let (mut a, mut b, mut b2, mut c) = (a, b, b2, c);
    a.name = name("a");
    b.name = name("b");
    b2.name = name("b");
    c.name = name("c");
    let [a, b, b2, c] = [a, b, b2, c].map(std::sync::Arc::new);
    let d = diff_workloads(&[a.clone(), b], &[b2, c]);
    assert_eq!(d.added, ["c"]);
    assert_eq!(d.changed, ["b"]);
    assert_eq!(d.removed, ["a"]);
    assert_eq!(
        diff_workloads(std::slice::from_ref(&a), std::slice::from_ref(&a)),
        Default::default()
    );
}
