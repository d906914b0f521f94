//! Secret and ConfigMap files: written before the start (Secrets below the tmpfs-checked
//! `run/secrets`, ConfigMaps in the container's folder), bound read-only and `noexec`,
//! removed with the workload.

use drover_protocol::{
    EnvRef, FileItem, FilesSource, Mount, MountSource, RefKind, RefValue, ValueRef,
};

use super::fixture::*;
use crate::host::fake::HostCall;

fn files(kind: RefKind, key: &str, path: &str, value: &str, target: &str) -> Mount {
    Mount {
        source: MountSource::Files(FilesSource {
            from: ValueRef {
                kind,
                object: n("obj"),
                digest: [1; 32],
            },
            items: vec![FileItem {
                key: key.into(),
                path: path.into(),
                value: RefValue(value.as_bytes().to_vec()),
            }],
        }),
        target: target.into(),
        read_only: true,
    }
}

#[test]
fn files_are_written_bound_read_only_and_removed_with_the_workload() {
    let mut fx = Fx::new();
    let mut spec = wl("web", "a");
    let c = &mut spec.containers[0];
    c.mounts.push(files(
        RefKind::Secret,
        "pw",
        "db/pw",
        "s3cret-value",
        "/run/creds",
    ));
    c.mounts.push(files(
        RefKind::ConfigMap,
        "conf",
        "app.conf",
        "level=1",
        "/etc/app",
    ));
    c.env_refs.push(EnvRef {
        name: "PW".into(),
        from: ValueRef {
            kind: RefKind::Secret,
            object: n("obj"),
            digest: [2; 32],
        },
        key: "pw".into(),
        value: RefValue(b"s3cret-value".to_vec()),
    });
    fx.agent.set_static_desired(vec![spec]);
    fx.pass();
    let paths = fx.paths();
    let secrets = paths.run.join("secrets");
    let calls = fx.host.take_calls();
    assert!(
        calls.contains(&HostCall::EnsureTmpfs(secrets.clone())),
        "{calls:?}"
    );
    let secret_file = secrets.join("web.app/0/db/pw");
    assert_eq!(
        fx.host.file(&secret_file).as_deref(),
        Some(&b"s3cret-value"[..])
    );
    let data = paths.container_data_dir(&n("web"), &n("app"));
    let conf = data.join("files/1/app.conf");
    assert_eq!(fx.host.file(&conf).as_deref(), Some(&b"level=1"[..]));
    let dir = paths.container_dir(&n("web"), &n("app"));
    let bundle = fx
        .host
        .file(&dir.join("bundle/config.json"))
        .expect("bundle");
    let oci: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let creds = oci["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/run/creds")
        .expect("the secret mount");
    assert_eq!(
        creds["source"],
        secrets.join("web.app/0").display().to_string()
    );
    for opt in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            creds["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == opt),
            "{opt}"
        );
    }
    let env = oci["process"]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "PW=s3cret-value"));
    // The record keeps the spec for comparisons; its JSON never the value.
    let rec = fx.record("web").expect("recorded");
    assert!(!serde_json::to_string(&rec).unwrap().contains("s3cret"));

    fx.agent.set_static_desired(vec![]);
    for _ in 0..4 {
        fx.pass();
        fx.clock.advance(20_000);
    }
    assert!(fx.record("web").is_none(), "removed");
    assert!(
        fx.host
            .take_calls()
            .contains(&HostCall::RemoveDir(secrets.join("web.app")))
    );
}

#[test]
fn a_non_root_container_owns_its_files() {
    let mut fx = Fx::new();
    let mut spec = wl("web", "a");
    let c = &mut spec.containers[0];
    c.security.run_as_user = Some(1000);
    c.security.run_as_group = Some(1001);
    c.mounts
        .push(files(RefKind::Secret, "pw", "pw", "v", "/run/creds"));
    fx.agent.set_static_desired(vec![spec]);
    fx.pass();
    let dir = fx.paths().run.join("secrets/web.app/0");
    let calls = fx.host.take_calls();
    assert!(
        calls.contains(&HostCall::ChownTree(dir, 1000, 1001)),
        "{calls:?}"
    );
}
