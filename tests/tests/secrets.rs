//! End-to-end: `kind: Secret` and `kind: ConfigMap` (issue 13, part 4) with a real hub, a
//! real agent and a real container. The container gets a Secret as an env variable and as
//! a file, and a ConfigMap as a file; it prints each value reversed (`rev`), so the output
//! proves it read them while the plain values can be searched for everywhere else:
//! - the hub's SQLite bytes, the hub's and agent's logs, `get`/`describe` in every output
//!   format, `drover-agent ps`, and every file of the agent's state folder: never there;
//! - the Secret file's host folder is on a tmpfs, and the mount is read-only inside; a
//!   second container running as uid 1000 reads its own copy;
//! - a changed Secret restarts the workload with the new value; removing the workload
//!   removes the Secret files.
//!
//! Needs root (real containers, a tmpfs mount).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::hub::TestHub;
use drover_tests::{oci, require_root, wait_for};

const T: Duration = Duration::from_secs(60);
const ENV_SECRET: &str = "env-s3cret-41c7e2";
const FILE_SECRET: &str = "file-s3cret-9b2d10";
const NEW_SECRET: &str = "env-s3cret-v2-77aa31";
const CONFIG: &str = "config-value-5e8a";

fn rev(s: &str) -> String {
    s.chars().rev().collect()
}

fn secret(env_value: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Secret\nmetadata: {{name: db}}\ntype: Opaque\nstringData:\n  password: {env_value}\n  cert: {FILE_SECRET}\n"
    )
}

fn fleet(image: &Path) -> String {
    let config = format!(
        "apiVersion: drover.dev/v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata:\n  app.conf: {CONFIG}\n"
    );
    let script = "echo pw=$(echo $PW | rev); echo cert=$(rev /run/creds/tls/cert.pem); \
                  echo conf=$(cat /etc/app/app.conf); \
                  if echo x > /run/creds/tls/cert.pem; then echo write=ok; else echo write=refused; fi; \
                  while true; do sleep 1; done";
    let deployment = format!(
        "apiVersion: drover.dev/v1
kind: Deployment
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{role: alice}}}}
  template:
    spec:
      stopGracePeriod: 1s
      volumes:
        - {{name: creds, secret: {{secretName: db, items: [{{key: cert, path: tls/cert.pem}}]}}}}
        - {{name: conf, configMap: {{name: app}}}}
      containers:
        - name: main
          image: oci:{}:latest
          env:
            - name: PW
              valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
          mounts:
            - {{volume: creds, mountPath: /run/creds}}
            - {{volume: conf, mountPath: /etc/app}}
          command: [/bin/sh, -c, \"{script}\"]
        - name: user
          image: oci:{}:latest
          securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
          mounts: [{{volume: creds, mountPath: /run/creds}}]
          command: [/bin/sh, -c, \"echo user-cert=$(rev /run/creds/tls/cert.pem); while true; do sleep 1; done\"]
",
        image.display(),
        image.display()
    );
    // The Deployment first: objects may come in any order within one apply.
    format!("{deployment}---\n{}---\n{config}", secret(ENV_SECRET))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every regular file below `dir`, not following links.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files_below(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

fn assert_nowhere(what: &str, hay: &[u8]) {
    for s in [ENV_SECRET, FILE_SECRET, NEW_SECRET] {
        assert!(!contains(hay, s), "a secret value is in {what}");
    }
}

fn fs_type(path: &Path) -> String {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn logs_show(agent: &TestAgent, container: &str, want: &[String]) {
    wait_for("the container prints the values", T, || {
        let (_, out, _) = agent.cli(&["logs", "app", "-c", container]);
        want.iter().all(|w| out.contains(w.as_str())).then_some(())
    });
}

#[test]
fn secrets_and_configmaps_reach_the_container_and_nothing_else() {
    if !require_root("secrets_and_configmaps_reach_the_container_and_nothing_else") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").unwrap();
    let snippet = hub.device_add("alice", &["role=alice"]);
    let mut alice = TestAgent::new("alice");
    // Declared after `alice`: dropped (unmounted) first, also when the test fails.
    let _tmpfs = Unmount(alice.run_dir().join("secrets"));
    alice.connect_to_hub(&snippet);
    alice.start();
    let (code, out, err) = hub.apply("fleet.yaml", &fleet(&image));
    assert_eq!(code, 0, "apply: {out}{err}");
    assert!(
        out.contains("secret/db created") && out.contains("configmap/app created"),
        "{out}"
    );
    let pid = alice.wait_running("app", "main", T);
    let want = [
        format!("pw={}", rev(ENV_SECRET)),
        format!("cert={}", rev(FILE_SECRET)),
        format!("conf={CONFIG}"),
        "write=refused".to_owned(),
    ];
    logs_show(&alice, "main", &want);
    // A container running as another user reads its copy too (the files are its own).
    logs_show(&alice, "user", &[format!("user-cert={}", rev(FILE_SECRET))]);

    // The Secret file's host folder is a tmpfs; the ConfigMap's is in the state folder.
    let secrets_dir = alice.run_dir().join("secrets/app.main/0");
    assert_eq!(
        fs::read(&secrets_dir.join("tls/cert.pem")),
        FILE_SECRET.as_bytes()
    );
    assert_eq!(fs_type(&secrets_dir), "tmpfs");
    let conf = alice.state.join("containers/app.main/files/1/app.conf");
    assert_eq!(fs::read(&conf), CONFIG.as_bytes());
    // Only their owner (the container's user) may read them: 0600, as documented.
    for f in [secrets_dir.join("tls/cert.pem"), conf.clone()] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&f).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }

    // Nowhere else: views in every format, statuses, logs, the hub's store, the state folder.
    for args in [
        &["get", "secrets", "-o", "json"][..],
        &["get", "secrets", "-o", "yaml"],
        &["get", "secrets"],
        &["describe", "secret", "db", "-o", "json"],
        &["describe", "secret", "db"],
        &["describe", "deployment", "app", "-o", "json"],
        &["get", "devices", "-o", "json"],
    ] {
        let (code, out, err) = hub.cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_nowhere(&format!("`{}`", args.join(" ")), out.as_bytes());
    }
    let (_, described, _) = hub.cli(&["describe", "secret", "db"]);
    assert!(
        described.contains("password: 17 bytes  <redacted>"),
        "{described}"
    );
    let (_, ps, _) = alice.cli(&["ps", "-o", "json"]);
    assert_nowhere("drover-agent ps", ps.as_bytes());

    // A changed Secret: a new revision, the workload restarts with the new value.
    let (code, out, err) = hub.apply("db.yaml", &secret(NEW_SECRET));
    assert_eq!(code, 0, "apply: {out}{err}");
    assert!(
        out.contains("deployment/app configured (its values changed)"),
        "{out}"
    );
    logs_show(&alice, "main", &[format!("pw={}", rev(NEW_SECRET))]);
    let new_pid = alice.wait_running("app", "main", T);
    assert_ne!(pid, new_pid, "the workload restarted");

    for (what, text) in [
        ("the hub's logs", hub.logs()),
        ("the agent's logs", alice.logs()),
    ] {
        assert_nowhere(what, text.as_bytes());
    }
    let data = hub.data_dir();
    for name in ["fleet.db", "fleet.db-wal"] {
        assert_nowhere(name, &std::fs::read(data.join(name)).unwrap_or_default());
    }
    let mut state_files = Vec::new();
    files_below(&alice.state, &mut state_files);
    assert!(state_files.len() > 5, "the state folder was walked");
    for f in &state_files {
        assert_nowhere(
            &f.display().to_string(),
            &std::fs::read(f).unwrap_or_default(),
        );
    }

    // A Secret in use cannot be deleted; deleting the whole file removes everything, and
    // the workload's Secret files go with it.
    let (code, _, err) = hub.cli(&["delete", "-f", &write(&hub, "db.yaml", &secret(NEW_SECRET))]);
    assert_ne!(code, 0, "the Secret is still used");
    assert!(err.contains("secret/db is used by deployment/app"), "{err}");
    let (code, out, err) = hub.cli(&["delete", "-f", &write(&hub, "all.yaml", &fleet(&image))]);
    assert_eq!(code, 0, "delete: {err}");
    assert!(out.contains("secret/db deleted"), "{out}");
    wait_for("the secret files are gone", T, || {
        (!alice.run_dir().join("secrets/app.main").exists()).then_some(())
    });
    alice.stop();
}

/// Lazily unmounts the tmpfs the agent mounted for Secret files (the test's run folder is
/// on disk, so the agent mounts one there).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

mod fs {
    pub fn read(p: &std::path::Path) -> Vec<u8> {
        std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

fn write(hub: &TestHub, name: &str, text: &str) -> String {
    let path = hub.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
