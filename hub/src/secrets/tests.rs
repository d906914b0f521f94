//! Parsing Secrets and ConfigMaps (located errors that never echo a value), and the pure
//! resolution of references.

use drover_protocol::{MountSource, Name, RefKind, RefValue, WorkloadSpec};

use super::{Missing, Objects, digest_refs, fill_values, references};
use crate::fleet::{Object, parse_objects};

fn parse(text: &str) -> Result<Vec<Object>, String> {
    parse_objects("s.yaml", text).map_err(|e| e.to_string())
}

const HEAD: &str = "apiVersion: drover.dev/v1\nkind: Secret\nmetadata: {name: db}\n";

#[test]
fn secrets_decode_data_and_string_data_wins() {
    let text =
        format!("{HEAD}type: Opaque\ndata: {{a: aGk=, b: eA==}}\nstringData: {{b: plain}}\n");
    let objects = parse(&text).unwrap();
    let Object::Config(o) = &objects[0] else {
        panic!("a Secret")
    };
    assert_eq!(o.kind, RefKind::Secret);
    assert_eq!(o.data["a"].as_bytes(), b"hi");
    assert_eq!(o.data["b"].as_bytes(), b"plain");
    assert!(!format!("{o:?}").contains("plain"), "Debug redacts");
    let cm = "apiVersion: drover.dev/v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {x: \"1\"}\n";
    let Object::Config(c) = &parse(cm).unwrap()[0] else {
        panic!("a ConfigMap")
    };
    assert_eq!(
        (c.kind, c.data["x"].as_bytes()),
        (RefKind::ConfigMap, &b"1"[..])
    );
}

#[test]
fn errors_are_located_and_never_echo_values() {
    let bad64 = parse(&format!("{HEAD}data:\n  pw: not*base64-s3cret\n")).unwrap_err();
    assert!(
        bad64.starts_with("s.yaml:5:7: data.pw is not valid base64"),
        "{bad64}"
    );
    assert!(!bad64.contains("s3cret"), "{bad64}");
    let ty = parse(&format!("{HEAD}type: kubernetes.io/tls\n")).unwrap_err();
    assert!(
        ty.starts_with("s.yaml:4:7: Secret type \"kubernetes.io/tls\" is not supported"),
        "{ty}"
    );
    let key = parse(&format!("{HEAD}stringData: {{\"a b\": x}}\n")).unwrap_err();
    assert!(key.starts_with("s.yaml:4:21: key \"a b\" must be"), "{key}");
    let cm =
        "apiVersion: drover.dev/v1\nkind: ConfigMap\nmetadata: {name: c}\nstringData: {x: y}\n";
    assert!(
        parse(cm)
            .unwrap_err()
            .starts_with("s.yaml:4:13: a ConfigMap has no stringData")
    );
    let spec = parse(&format!("{HEAD}spec: {{}}\n")).unwrap_err();
    assert!(
        spec.starts_with("s.yaml:4:7: a Secret has no spec"),
        "{spec}"
    );
    let dep = "apiVersion: drover.dev/v1\nkind: Device\nmetadata: {name: d}\ndata: {x: y}\n";
    assert!(
        parse(dep)
            .unwrap_err()
            .starts_with("s.yaml:4:7: data, stringData and type belong")
    );
    let big = format!(
        "{HEAD}stringData:\n  a: {}\n  b: {}\n",
        "x".repeat(600_000),
        "y".repeat(500_000)
    );
    let big = parse(&big).unwrap_err();
    // Kubernetes' 1 MiB per object: a bigger one cannot even be in a manifest file.
    assert!(
        big.starts_with("s.yaml:1:1: file is larger than 1048576 bytes"),
        "{big}"
    );
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn objects(value: &str) -> Objects {
    let text = format!("{HEAD}stringData: {{pw: {value}, user: u}}\n");
    let Object::Config(o) = parse(&text).unwrap().remove(0) else {
        panic!()
    };
    Objects::from([((RefKind::Secret, name("db")), o)])
}

fn template() -> WorkloadSpec {
    let text = "apiVersion: drover.dev/v1
kind: Workload
metadata: {name: w}
spec:
  volumes: [{name: s, secret: {secretName: db, items: [{key: pw, path: a/pw.txt}]}}]
  containers:
    - name: c
      image: x
      env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]
      mounts: [{volume: s, mountPath: /s}]
";
    // Workload manifests refuse references; parse the template part through a Deployment.
    let dep = text
        .replace("kind: Workload", "kind: Deployment")
        .replace(
            "spec:\n  volumes",
            "spec:\n  selector: {}\n  template:\n   spec:\n    volumes",
        )
        .replace("\n  containers:", "\n    containers:")
        .replace("\n    - name: c", "\n      - name: c")
        .replace("\n      image", "\n        image")
        .replace("\n      env", "\n        env")
        .replace("\n      mounts", "\n        mounts");
    let Object::Deployment(d) = parse(&dep).unwrap().remove(0) else {
        panic!("{dep}")
    };
    d.template
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    super::SecretBox::from_key(&[3; 32]).digest(parts)
}

#[test]
fn digests_follow_values_and_fill_puts_them_in() {
    let mut a = template();
    digest_refs(&mut a, &objects("one"), &digest).unwrap();
    let mut b = template();
    digest_refs(&mut b, &objects("two"), &digest).unwrap();
    assert_ne!(a, b, "another value, another spec");
    let mut again = template();
    digest_refs(&mut again, &objects("one"), &digest).unwrap();
    assert_eq!(a, again);
    assert!(references(&a, RefKind::Secret, &name("db")));
    assert!(!references(&a, RefKind::ConfigMap, &name("db")));
    fill_values(&mut a, &objects("one"));
    assert_eq!(a.containers[0].env_refs[0].value.as_bytes(), b"one");
    let MountSource::Files(f) = &a.containers[0].mounts[0].source else {
        panic!()
    };
    assert_eq!(
        (f.items[0].path.as_str(), f.items[0].value.as_bytes()),
        ("a/pw.txt", &b"one"[..])
    );
    assert!(!format!("{a:?}").contains("one\""), "Debug redacts");
}

#[test]
fn missing_keys_and_objects_are_named() {
    let mut t = template();
    let none = Objects::new();
    let e = digest_refs(&mut t, &none, &digest).unwrap_err();
    assert!(matches!(e, Missing::Object { .. }));
    let mut objs = objects("x");
    let o = objs.values_mut().next().unwrap();
    o.data.remove("pw");
    o.data.insert("other".into(), RefValue(b"v".to_vec()));
    let e = digest_refs(&mut t, &objs, &digest).unwrap_err();
    assert_eq!(e.to_string(), "key \"pw\" not found in Secret \"db\"");
    // A binary value cannot be an env value (the process would never start).
    for bad in [&b"a\0b"[..], &[0xff, 0xfe][..]] {
        let mut objs = objects("x");
        let o = objs.values_mut().next().unwrap();
        o.data.insert("pw".into(), RefValue(bad.to_vec()));
        let e = digest_refs(&mut t, &objs, &digest).unwrap_err();
        assert!(matches!(e, Missing::NotText { .. }), "{e}");
        assert!(e.to_string().contains("mount it as a file"), "{e}");
    }
}

#[test]
fn local_workloads_cannot_reference_objects() {
    let text = "apiVersion: drover.dev/v1
kind: Workload
metadata: {name: w}
spec:
  containers:
    - name: c
      image: x
      env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]
";
    let e = drover_protocol::manifest::parse_workloads("w.yaml", text).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("w.yaml:8:35: Secret references are for the hub"),
        "{e}"
    );
}
