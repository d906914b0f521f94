//! Secrets and ConfigMaps through the controller: apply in any order within a set,
//! located errors, values only in the sealed states, encrypted in the store, a changed
//! Secret rolling out to the devices that use it, delete refused while used.

use super::*;

const SECRET: &str = "apiVersion: drover.dev/v1
kind: Secret
metadata: {name: db}
type: Opaque
data:
  password: aHVudGVyMi1zM2NyZXQ=
stringData:
  user: admin-user
";

const CONFIG: &str = "apiVersion: drover.dev/v1
kind: ConfigMap
metadata: {name: settings}
data:
  app.conf: \"level=debug\"
";

fn web(secret_key: &str) -> FileText {
    file(
        "web.yaml",
        &format!(
            "apiVersion: drover.dev/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector:
    matchLabels: {{role: sensor}}
  template:
    spec:
      volumes:
        - {{name: creds, secret: {{secretName: db}}}}
        - {{name: conf, configMap: {{name: settings}}}}
      containers:
        - name: main
          image: oci:/a
          env:
            - name: DB_PASSWORD
              valueFrom: {{secretKeyRef: {{name: db, key: {secret_key}}}}}
          mounts:
            - {{volume: creds, mountPath: /run/creds}}
            - {{volume: conf, mountPath: /etc/app}}
"
        ),
    )
}

fn setup() -> (tempfile::TempDir, Controller, UnboundedReceiver<Out>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    published(&mut rx, &c);
    (dir, c, rx)
}

#[test]
fn values_reach_only_the_sealed_state() {
    let (dir, mut c, mut rx) = setup();
    // Deployment first, its objects after, in one apply set.
    let files = [
        web("password"),
        file("s.yaml", SECRET),
        file("c.yaml", CONFIG),
    ];
    let r = c.apply(&files, false, 2).unwrap();
    assert!(
        r.results.contains(&"secret/db created".to_owned()),
        "{:?}",
        r.results
    );
    let p = published(&mut rx, &c);
    let main = &p[0].workloads[0].containers[0];
    assert_eq!(main.env_refs[0].value.as_bytes(), b"hunter2-s3cret");
    let drover_protocol::MountSource::Files(f) = &main.mounts[0].source else {
        panic!("files mount")
    };
    let keys: Vec<_> = f
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.value.as_bytes()))
        .collect();
    assert_eq!(
        keys,
        [
            ("password", &b"hunter2-s3cret"[..]),
            ("user", b"admin-user")
        ]
    );
    assert!(main.mounts.iter().all(|m| m.read_only));
    // Not in the store's bytes, not in any view.
    drop(c);
    let db = std::fs::read(dir.path().join("fleet.db")).unwrap();
    let wal = std::fs::read(dir.path().join("fleet.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(7).any(|w| w == b"hunter2"),
            "secret in the store"
        );
    }
}

#[test]
fn views_redact_secret_values() {
    let (dir, mut c, _rx) = setup();
    c.apply(&[file("s.yaml", SECRET), file("c.yaml", CONFIG)], false, 2)
        .unwrap();
    let r = reader(dir.path(), &c);
    let v = r.config_object("Secret", "db").unwrap();
    let json = serde_json::to_string(&v).unwrap();
    assert!(
        !json.contains("hunter2") && json.contains("<redacted>"),
        "{json}"
    );
    assert_eq!(v.keys[0].size, 14);
    let m = r.config_object("ConfigMap", "settings").unwrap();
    assert_eq!(m.keys[0].value, "level=debug");
    assert!(matches!(
        r.config_object("Secret", "nope"),
        Err(ControllerError::NotFound { .. })
    ));
}

#[test]
fn missing_objects_and_keys_are_located() {
    let (_dir, mut c, _rx) = setup();
    let e = c
        .apply(&[web("password"), file("c.yaml", CONFIG)], false, 2)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "web.yaml:10:18: Secret \"db\" not found: apply it first, or in the same apply"
    );
    let e = c
        .apply(
            &[
                web("pasword"),
                file("s.yaml", SECRET),
                file("c.yaml", CONFIG),
            ],
            false,
            2,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "web.yaml:17:26: key \"pasword\" not found in Secret \"db\""
    );
    assert!(c.objects.is_empty(), "a failed apply stages nothing");
}

#[test]
fn a_changed_secret_rolls_out_and_delete_is_refused_while_used() {
    let (dir, mut c, mut rx) = setup();
    let files = [
        file("s.yaml", SECRET),
        file("c.yaml", CONFIG),
        web("password"),
    ];
    c.apply(&files, false, 2).unwrap();
    let first = published(&mut rx, &c);
    let r = c.apply(&[file("s.yaml", SECRET)], false, 3).unwrap();
    assert_eq!(r.results, ["secret/db unchanged"]);
    assert!(published(&mut rx, &c).is_empty());
    let changed = SECRET.replace("admin-user", "other-user");
    let r = c.apply(&[file("s.yaml", &changed)], false, 4).unwrap();
    assert!(
        r.results
            .contains(&"deployment/web configured (its values changed)".to_owned())
    );
    let next = published(&mut rx, &c);
    assert!(next[0].generation > first[0].generation);
    let (a, b) = (&first[0].workloads[0], &next[0].workloads[0]);
    assert_ne!(
        a.containers[0].mounts[0], b.containers[0].mounts[0],
        "digest changed"
    );
    assert_eq!(c.snapshot.revisions[&Name::new("web").unwrap()].revision, 2);
    let without = SECRET.replace("  password: aHVudGVyMi1zM2NyZXQ=\n", "");
    let e = c.apply(&[file("s.yaml", &without)], false, 5).unwrap_err();
    assert_eq!(
        e.to_string(),
        "deployment/web: key \"password\" not found in Secret \"db\""
    );
    let e = c.delete(&[file("s.yaml", SECRET)], false, 5).unwrap_err();
    assert!(
        e.to_string()
            .contains("secret/db is used by deployment/web"),
        "{e}"
    );
    // The Secret before the Deployment using it, in one delete: both go.
    let r = c
        .delete(&[file("s.yaml", SECRET), web("password")], false, 6)
        .unwrap();
    assert_eq!(r.results, ["deployment/web deleted", "secret/db deleted"]);
    // Reloaded from the store with the same key: still there, values intact.
    let b = crate::secrets::SecretBox::from_key(&[1; 32]);
    drop(c);
    let (c, _rx) = controller(dir.path());
    let c = c.with_secret_box(b).unwrap();
    assert_eq!(c.objects.len(), 1, "the ConfigMap");
}

#[test]
fn objects_survive_a_restart_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let b = crate::secrets::SecretBox::from_key(&[9; 32]);
    let (c, _rx) = controller(dir.path());
    let mut c = c.with_secret_box(b.clone()).unwrap();
    c.apply(&[file("s.yaml", SECRET)], false, 2).unwrap();
    drop(c);
    let (c, _rx) = controller(dir.path());
    let c = c.with_secret_box(b).unwrap();
    let o = &c.objects[&(drover_protocol::RefKind::Secret, Name::new("db").unwrap())];
    assert_eq!(o.data["password"].as_bytes(), b"hunter2-s3cret");
    let (c, _rx) = controller(dir.path());
    let other = crate::secrets::SecretBox::from_key(&[8; 32]);
    let e = c.with_secret_box(other).err().unwrap().to_string();
    assert!(e.contains("does not open") && !e.contains("hunter2"), "{e}");
}
