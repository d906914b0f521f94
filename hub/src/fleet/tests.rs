//! Tests of manifest parsing and placement together: placement tests build their
//! Deployments from YAML, as the hub does.

use std::collections::{BTreeMap, BTreeSet};

use drover_protocol::{Capacity, Name, NetworkMode, RestartPolicy};

use super::*;

const EXAMPLE: &str = "\
apiVersion: drover.dev/v1
kind: Deployment
metadata: {name: sensor, labels: {team: iot}}
spec:
  selector:
    matchLabels: {role: sensor}
    matchExpressions: [{key: zone, operator: In, values: [a, b]}]
  replicas: 2
  placement: binpack
  template:
    spec:
      restartPolicy: OnFailure
      network: none
      containers:
        - name: main
          image: oci:/images/sensor:1
          resources: {memory: 64Mi}
---
apiVersion: drover.dev/v1
kind: Device
metadata: {name: pi-1, labels: {role: sensor, zone: a}}
";

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn err(text: &str) -> String {
    match parse_objects("fleet.yaml", text) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn starts(text: &str, prefix: &str) {
    let got = err(text);
    assert!(got.starts_with(prefix), "want {prefix:?}, got {got:?}");
}

/// A Deployment named `name` with the given selector/replicas/placement lines and a
/// container limited to `memory`.
fn deployment(name: &str, spec_lines: &str, memory: &str) -> Deployment {
    let text = format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n{spec_lines}  template:\n    spec:\n      containers: [{{name: main, image: x, resources: {{memory: {memory}}}}}]\n"
    );
    match parse_objects("d.yaml", &text) {
        Ok(mut objects) => match objects.pop() {
            Some(Object::Deployment(d)) => d,
            other => panic!("not a deployment: {other:?}"),
        },
        Err(e) => panic!("{e}"),
    }
}

fn device(n: &str, pairs: &[(&str, &str)], online: bool, memory: u64) -> DeviceInfo {
    DeviceInfo {
        name: name(n),
        labels: std::sync::Arc::new(labels(pairs)),
        online,
        capacity: Capacity {
            memory_bytes: memory,
            ..Capacity::default()
        },
    }
}

fn sensors(n: usize) -> Vec<DeviceInfo> {
    (1..=n)
        .map(|i| device(&format!("pi-{i}"), &[("role", "sensor")], true, 0))
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<Name> {
    list.iter().map(|n| name(n)).collect()
}

fn on(assignments: &Assignments, deployment: &str) -> Vec<String> {
    assignments
        .get(&name(deployment))
        .map(|s| s.iter().map(|n| n.as_str().to_owned()).collect())
        .unwrap_or_default()
}

const SENSORS: &str = "  selector: {matchLabels: {role: sensor}}\n";

#[test]
fn full_example_parses_both_kinds() {
    let objects = parse_objects("fleet.yaml", EXAMPLE).expect("parses");
    let [Object::Deployment(d), Object::Device(dev)] = &objects[..] else {
        panic!("{objects:?}");
    };
    assert_eq!(d.name, name("sensor"));
    assert_eq!(d.labels, labels(&[("team", "iot")]));
    assert_eq!(d.selector.match_labels, labels(&[("role", "sensor")]));
    assert_eq!(
        d.selector.match_expressions,
        vec![Requirement {
            key: "zone".into(),
            operator: Operator::In,
            values: vec!["a".into(), "b".into()],
        }]
    );
    assert_eq!(d.replicas, Some(2));
    assert_eq!(d.placement, Placement::Binpack);
    assert_eq!(d.template.name, name("sensor"));
    assert_eq!(d.template.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(d.template.network, NetworkMode::None);
    assert_eq!(memory_of(&d.template), 64 << 20);
    assert_eq!(
        dev,
        &DeviceObject {
            name: name("pi-1"),
            labels: labels(&[("role", "sensor"), ("zone", "a")]),
            positions: Positions::default(),
        }
    );
    let daemon = deployment("web", "  selector: {}\n", "8Mi");
    assert_eq!(
        (daemon.replicas, daemon.placement),
        (None, Placement::Spread)
    );
    assert_eq!(daemon.selector, Selector::default());
}

#[test]
fn type_errors_are_located() {
    let unknown = EXAMPLE.replace("  replicas: 2", "  replica: 2");
    starts(
        &unknown,
        "fleet.yaml:8:3: unknown field `replica`, expected one of",
    );
    let op = EXAMPLE.replace("operator: In", "operator: Within");
    assert_eq!(
        err(&op),
        "fleet.yaml:7:46: unknown variant `Within`, expected one of In, NotIn, Exists, DoesNotExist"
    );
    let kind = EXAMPLE.replace("kind: Device", "kind: Gadget");
    assert_eq!(
        err(&kind),
        "fleet.yaml:20:7: unknown variant `Gadget`, expected one of Deployment, Device, Secret, ConfigMap"
    );
    let api = EXAMPLE.replace("drover.dev/v1\nkind: Device", "drover.dev/v2\nkind: Device");
    starts(&api, "fleet.yaml:19:13: unknown variant `drover.dev/v2`");
    let strategy = EXAMPLE.replace("binpack", "pack");
    starts(&strategy, "fleet.yaml:9:14: unknown variant `pack`");
    let in_template = EXAMPLE.replace("          image:", "          imagee:");
    starts(&in_template, "fleet.yaml:16:11: unknown field `imagee`");
}

#[test]
fn bad_selectors_are_located() {
    let cases = [
        (
            "operator: In",
            "7:24: operator In needs a non-empty values list",
        ),
        (
            "operator: In, values: []",
            "7:58: operator In needs a non-empty values list",
        ),
        (
            "operator: NotIn",
            "7:24: operator NotIn needs a non-empty values list",
        ),
        (
            "operator: Exists, values: [a]",
            "7:62: operator Exists takes no values",
        ),
        (
            "operator: In, values: [a, -b]",
            "7:62: label value \"-b\" must be",
        ),
    ];
    for (replace, want) in cases {
        let got = err(&EXAMPLE.replace("operator: In, values: [a, b]", replace));
        assert!(
            got.starts_with(&format!("fleet.yaml:{want}")),
            "{replace}: {got}"
        );
    }
    let key = EXAMPLE.replace("key: zone", "key: \"bad key\"");
    starts(&key, "fleet.yaml:7:30: label key \"bad key\" must be");
    let value = EXAMPLE.replace("zone: a}}", "zone: \"a b\"}}");
    starts(&value, "fleet.yaml:21:53: label value \"a b\"");
    let key = EXAMPLE.replace("zone: a}}", "-zone: a}}");
    starts(&key, "fleet.yaml:21:54: label key \"-zone\"");
    let match_labels = EXAMPLE.replace("matchLabels: {role: sensor}", "matchLabels: {role: -x}");
    starts(&match_labels, "fleet.yaml:6:25: label value \"-x\"");
}

#[test]
fn semantic_errors_are_located() {
    let zero = EXAMPLE.replace("replicas: 2", "replicas: 0");
    starts(&zero, "fleet.yaml:8:13: replicas must be at least 1");
    let no_replicas = EXAMPLE.replace("  replicas: 2\n", "");
    starts(&no_replicas, "fleet.yaml:8:14: placement needs replicas");
    let device_spec = format!("{EXAMPLE}spec: {{}}\n");
    assert_eq!(
        err(&device_spec),
        "fleet.yaml:22:7: a Device has no spec: its labels go in metadata.labels"
    );
    let hub = EXAMPLE.replace("name: pi-1", "name: drover-hub-2");
    starts(&hub, "fleet.yaml:21:18: device names starting with");
    let no_containers = EXAMPLE.replace(
        "\n        - name: main\n          image: oci:/images/sensor:1\n          resources: {memory: 64Mi}",
        " []",
    );
    assert_eq!(
        err(&no_containers),
        "fleet.yaml:14:19: a workload needs at least one container"
    );
}

#[test]
fn workload_kind_is_refused_clearly() {
    let text = "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {name: web}\nspec:\n  containers: [{name: main, image: x}]\n";
    let got = err(text);
    assert!(
        got.starts_with("fleet.yaml:2:7: kind Workload is for an agent's local manifests"),
        "{got}"
    );
    assert!(got.contains("spec.template.spec"));
}

#[test]
fn apply_set_refuses_duplicates_and_any_bad_file() {
    let device =
        |n: &str| format!("apiVersion: drover.dev/v1\nkind: Device\nmetadata: {{name: {n}}}\n");
    let set = |files: &[(&str, String)]| {
        let owned: Vec<(String, String)> = files
            .iter()
            .map(|(f, t)| ((*f).to_owned(), t.clone()))
            .collect();
        parse_set(&owned)
    };
    let ok = set(&[("a.yaml", EXAMPLE.to_owned()), ("b.yaml", device("pi-2"))]).expect("parses");
    assert_eq!(ok.len(), 3);
    // Same name, different kinds: fine.
    let mixed = set(&[("a.yaml", device("sensor")), ("b.yaml", EXAMPLE.to_owned())]);
    assert_eq!(mixed.map(|v| v.len()), Ok(3));
    let twice = set(&[
        ("a.yaml", EXAMPLE.to_owned()),
        ("b.yaml", format!("---\n{}", device("pi-1"))),
    ]);
    assert_eq!(
        twice.map_err(|e| e.to_string()),
        Err("b.yaml:2:1: Device \"pi-1\" is defined twice (first at a.yaml:19:1)".to_owned())
    );
    let bad = set(&[("a.yaml", device("pi-1")), ("b.yaml", "kind: [".to_owned())]);
    assert!(bad.map_err(|e| e.file).err() == Some("b.yaml".to_owned()));
}

#[test]
fn daemonset_runs_on_every_matching_device() {
    let d = deployment("agent", SENSORS, "8Mi");
    let mut devices = sensors(3);
    devices.push(device("gw", &[("role", "gateway")], true, 0));
    devices[1].online = false;
    let (placed, warnings) = place(std::slice::from_ref(&d), &devices, &Assignments::new());
    assert_eq!(on(&placed, "agent"), ["pi-1", "pi-2", "pi-3"]);
    assert!(warnings.is_empty());
    let (placed, warnings) = place(&[d], &devices[3..], &Assignments::new());
    assert_eq!(on(&placed, "agent"), Vec::<String>::new());
    assert_eq!(warnings[0].message, "the selector matches no device");
}

#[test]
fn relabel_moves_a_workload() {
    let d = deployment("sensor", &format!("{SENSORS}  replicas: 1\n"), "8Mi");
    let mut devices = sensors(2);
    let (first, _) = place(std::slice::from_ref(&d), &devices, &Assignments::new());
    assert_eq!(on(&first, "sensor"), ["pi-1"]);
    devices[0].labels = std::sync::Arc::new(labels(&[("role", "spare")]));
    let (second, _) = place(std::slice::from_ref(&d), &devices, &first);
    assert_eq!(on(&second, "sensor"), ["pi-2"]);
    let daemon = deployment("agent", SENSORS, "8Mi");
    let (placed, _) = place(&[daemon], &devices, &first);
    assert_eq!(on(&placed, "agent"), ["pi-2"]);
}

#[test]
fn spread_puts_replicas_on_different_devices() {
    let d = deployment("sensor", &format!("{SENSORS}  replicas: 2\n"), "8Mi");
    let (placed, warnings) = place(&[d], &sensors(3), &Assignments::new());
    assert_eq!(on(&placed, "sensor"), ["pi-1", "pi-2"]);
    assert!(warnings.is_empty());
    // A second deployment goes to the least loaded device first.
    let a = deployment("a", &format!("{SENSORS}  replicas: 2\n"), "8Mi");
    let b = deployment("b", &format!("{SENSORS}  replicas: 2\n"), "8Mi");
    let (placed, _) = place(&[b, a], &sensors(3), &Assignments::new());
    assert_eq!(on(&placed, "a"), ["pi-1", "pi-2"]);
    assert_eq!(on(&placed, "b"), ["pi-1", "pi-3"]);
}

#[test]
fn online_devices_are_preferred() {
    let d = deployment("sensor", &format!("{SENSORS}  replicas: 1\n"), "8Mi");
    let mut devices = sensors(2);
    devices[0].online = false;
    let (placed, _) = place(std::slice::from_ref(&d), &devices, &Assignments::new());
    assert_eq!(on(&placed, "sensor"), ["pi-2"]);
    // But an offline device keeps what it has: no churn on a network blip.
    let previous = BTreeMap::from([(name("sensor"), names(&["pi-1"]))]);
    let (placed, _) = place(&[d], &devices, &previous);
    assert_eq!(on(&placed, "sensor"), ["pi-1"]);
}

#[test]
fn stable_when_a_new_device_appears() {
    let a = deployment("a", &format!("{SENSORS}  replicas: 2\n"), "8Mi");
    let b = deployment("b", &format!("{SENSORS}  replicas: 1\n"), "8Mi");
    let ds = [a, b];
    let (first, _) = place(&ds, &sensors(2), &Assignments::new());
    let mut devices = vec![device("pi-0", &[("role", "sensor")], true, 0)];
    devices.extend(sensors(2));
    let (second, _) = place(&ds, &devices, &first);
    assert_eq!(first, second);
    let (third, _) = place(&ds, &devices, &second);
    assert_eq!(second, third);
}

#[test]
fn scale_down_drops_the_last_devices() {
    let three = deployment("sensor", &format!("{SENSORS}  replicas: 3\n"), "8Mi");
    let (placed, _) = place(&[three], &sensors(4), &Assignments::new());
    assert_eq!(on(&placed, "sensor"), ["pi-1", "pi-2", "pi-3"]);
    let one = deployment("sensor", &format!("{SENSORS}  replicas: 1\n"), "8Mi");
    let (down, _) = place(std::slice::from_ref(&one), &sensors(4), &placed);
    assert_eq!(on(&down, "sensor"), ["pi-1"]);
    // Offline devices are dropped before online ones.
    let mut devices = sensors(4);
    devices[0].online = false;
    let (down, _) = place(&[one], &devices, &placed);
    assert_eq!(on(&down, "sensor"), ["pi-2"]);
}

#[test]
fn binpack_fills_one_device_first() {
    let spec = |n| format!("{SENSORS}  replicas: {n}\n  placement: binpack\n");
    let ds: Vec<Deployment> = ["a", "b", "c"]
        .iter()
        .map(|n| deployment(n, &spec(1), "300Mi"))
        .collect();
    let gib = 1 << 30;
    let devices: Vec<DeviceInfo> = (1..=3)
        .map(|i| device(&format!("pi-{i}"), &[("role", "sensor")], true, gib))
        .collect();
    let (placed, warnings) = place(&ds, &devices, &Assignments::new());
    assert_eq!(on(&placed, "a"), ["pi-1"]);
    assert_eq!(on(&placed, "b"), ["pi-1"]);
    assert_eq!(on(&placed, "c"), ["pi-1"]);
    assert!(warnings.is_empty());
    // A fourth does not fit (1200Mi > 1Gi): next device.
    let mut four = ds.clone();
    four.push(deployment("d", &spec(1), "300Mi"));
    let (placed, _) = place(&four, &devices, &Assignments::new());
    assert_eq!(on(&placed, "d"), ["pi-2"]);
    // Too big for any device: nothing, with a warning.
    let huge = deployment("huge", &spec(1), "2Gi");
    let (placed, warnings) = place(&[huge], &devices, &Assignments::new());
    assert_eq!(on(&placed, "huge"), Vec::<String>::new());
    assert_eq!(
        warnings[0].message,
        format!(
            "wants 1 replica, only 0 of 3 matching devices have {} bytes of memory free",
            2u64 << 30
        )
    );
}

#[test]
fn fewer_matching_devices_than_replicas_warns() {
    let d = deployment("sensor", &format!("{SENSORS}  replicas: 3\n"), "8Mi");
    let (placed, warnings) = place(&[d], &sensors(2), &Assignments::new());
    assert_eq!(on(&placed, "sensor"), ["pi-1", "pi-2"]);
    assert_eq!(
        warnings,
        vec![PlacementWarning {
            deployment: name("sensor"),
            message: "wants 3 replicas, only 2 devices match".into(),
        }]
    );
}

#[test]
fn desired_by_device_names_workloads_after_deployments() {
    let b = deployment("b", SENSORS, "8Mi");
    let a = deployment("a", &format!("{SENSORS}  replicas: 1\n"), "8Mi");
    let ds = [b, a];
    let (placed, _) = place(&ds, &sensors(2), &Assignments::new());
    let desired = desired_by_device(&ds, &placed);
    let summary: Vec<(String, Vec<String>)> = desired
        .iter()
        .map(|(dev, specs)| {
            let names = specs.iter().map(|s| s.name.as_str().to_owned()).collect();
            (dev.as_str().to_owned(), names)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("pi-1".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ("pi-2".to_owned(), vec!["b".to_owned()]),
        ]
    );
}

#[test]
fn empty_documents_are_skipped_but_a_file_without_objects_is_refused() {
    let text = format!("---\n{EXAMPLE}---\n");
    assert_eq!(parse_objects("e.yaml", &text).map(|v| v.len()), Ok(2));
    for empty in ["", "---\n", "---\n---\n", "# only a comment\n"] {
        assert_eq!(
            parse_objects("e.yaml", empty).map_err(|e| e.to_string()),
            Err("e.yaml:1:1: no objects in e.yaml".to_owned()),
            "{empty:?}"
        );
    }
    let set = parse_set(&[
        ("a.yaml".to_owned(), EXAMPLE.to_owned()),
        ("b.yaml".to_owned(), "---\n".to_owned()),
    ]);
    assert_eq!(
        set.map_err(|e| e.to_string()),
        Err("b.yaml:1:1: no objects in b.yaml".to_owned())
    );
}

#[test]
fn objects_know_where_they_were_written() {
    let objects = parse_objects("fleet.yaml", EXAMPLE).expect("parses");
    let (Object::Deployment(dep), Object::Device(dev)) = (&objects[0], &objects[1]) else {
        panic!("{objects:?}")
    };
    assert_eq!(
        dev.at("Device \"pi-1\" is not registered: add it with drover-hub device add")
            .to_string(),
        "fleet.yaml:21:18: Device \"pi-1\" is not registered: add it with drover-hub device add"
    );
    assert_eq!(dep.at("x").to_string(), "fleet.yaml:3:18: x");
    let image = &dep.positions.images[&name("main")];
    assert_eq!(
        (image.file.as_str(), image.line, image.column),
        ("fleet.yaml", 16, 18)
    );
    // Positions are not part of the object: the same object written elsewhere is equal,
    // and the stored (JSON) form has none and round-trips.
    let moved = parse_objects("other.yaml", &format!("\n\n{EXAMPLE}")).expect("parses");
    assert_eq!(moved, objects);
    let json = serde_json::to_string(&objects).expect("serializes");
    assert!(!json.contains("positions"), "{json}");
    let back: Vec<Object> = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, objects);
    let Object::Device(stored) = &back[1] else {
        panic!()
    };
    assert!(stored.positions.name.is_none());
    assert_eq!(stored.at("x").to_string(), "device/pi-1:0:0: x");
}

#[test]
fn template_metadata_labels_are_checked_and_kept_on_the_workload() {
    let with = |labels: &str| {
        EXAMPLE.replace(
            "  template:\n    spec:\n",
            &format!("  template:\n    metadata:\n      labels: {labels}\n    spec:\n"),
        )
    };
    let objects = parse_objects("fleet.yaml", &with("{app: sensor, example.com/tier: edge}"))
        .expect("parses");
    let Object::Deployment(dep) = &objects[0] else {
        panic!()
    };
    assert_eq!(
        dep.template.labels,
        labels(&[("app", "sensor"), ("example.com/tier", "edge")])
    );
    assert_eq!(
        dep.labels,
        labels(&[("team", "iot")]),
        "metadata.labels stay apart"
    );
    starts(&with("{app: a b}"), "fleet.yaml:12:21: label value \"a b\"");
    starts(&with("{-app: x}"), "fleet.yaml:12:22: label key \"-app\"");
    let unknown = EXAMPLE.replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata: {name: x}\n    spec:\n",
    );
    starts(&unknown, "fleet.yaml:11:16: unknown field `name`");
    let plain = parse_objects("fleet.yaml", EXAMPLE).expect("parses");
    let Object::Deployment(dep) = &plain[0] else {
        panic!()
    };
    assert!(dep.template.labels.is_empty());
}

#[test]
fn an_image_typo_is_refused_at_the_image() {
    let typo = EXAMPLE.replace("image: oci:/images/sensor:1", "image: Nginx:1");
    starts(
        &typo,
        "fleet.yaml:16:18: image \"Nginx:1\": repository \"Nginx\" is not valid",
    );
}
