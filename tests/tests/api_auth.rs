//! End-to-end: the hub's management API needs a token, from loopback too. Without one,
//! `/v1` and `/metrics` answer 401 with a JSON error that says where the tokens are; the
//! admin token (`data_dir/api.token`, which the CLI finds through the hub's config) may do
//! anything; the read token (`data_dir/read.token`) reads and opens the dashboard but
//! every change is 403; a wrong token is 401. Both files are 0600 and survive a restart
//! unchanged. `image import` refuses a layout with a symlinked blob or index without
//! following it. Raw HTTP over a real socket, a real `drover-hub serve`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use drover_tests::hub::TestHub;
use drover_tests::oci;
use serde_json::Value;

/// `METHOD path` with `headers` and a JSON `body`: (status, head, body).
fn http(
    hub: &TestHub,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let addr = hub.api.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].as_str().unwrap().to_owned()
}

const DEVICE: &str = r#"{"name":"pi-auth","labels":{}}"#;

#[test]
fn every_v1_route_needs_a_token_and_the_read_token_never_writes() {
    let mut hub = TestHub::new();
    hub.start();
    let admin = hub.admin_header();
    let read = format!("Authorization: Bearer {}", hub.read_token());
    let data = hub.data_dir().display().to_string();

    // No token, from loopback: 401 with where the tokens are.
    for path in ["/v1/devices", "/v1/healthz", "/v1/events", "/metrics", "/"] {
        let (code, head, body) = http(&hub, "GET", path, &[], "");
        assert_eq!(code, 401, "GET {path}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
        let e = error_of(&body);
        assert!(e.contains(&format!("{data}/api.token")), "{e}");
        assert!(e.contains(&format!("{data}/read.token")), "{e}");
    }
    let (code, _, body) = http(&hub, "POST", "/v1/devices", &[], DEVICE);
    assert_eq!(code, 401, "{body}");

    // A wrong token: 401, saying so.
    let wrong = "Authorization: Bearer 0123456789abcdef0123456789abcdef0123456789a";
    let (code, _, body) = http(&hub, "GET", "/v1/devices", &[wrong], "");
    assert_eq!(code, 401);
    assert!(error_of(&body).contains("none of the hub's"), "{body}");

    // The read token: reads, the dashboard and /metrics; never a change.
    for path in [
        "/v1/devices",
        "/v1/stats",
        "/metrics",
        "/",
        "/assets/app.js",
    ] {
        let (code, _, body) = http(&hub, "GET", path, &[&read], "");
        assert_eq!(code, 200, "GET {path}: {body}");
    }
    for (method, path, body) in [
        ("POST", "/v1/devices", DEVICE),
        ("POST", "/v1/apply", "[]"),
        ("DELETE", "/v1/clients/nope", ""),
    ] {
        let (code, _, answer) = http(&hub, method, path, &[&read], body);
        assert_eq!(code, 403, "{method} {path}: {answer}");
        assert!(error_of(&answer).contains("read-only token"), "{answer}");
    }
    assert!(
        hub.devices().as_array().unwrap().is_empty(),
        "nothing was added"
    );

    // The admin token: changes from loopback.
    let (code, _, body) = http(&hub, "POST", "/v1/devices", &[&admin], DEVICE);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(&hub, "GET", "/v1/devices/pi-auth", &[&admin], "");
    assert_eq!(code, 200, "{body}");

    // Env values are the admin's only: a read token sees the names, never the values.
    let web = "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  \
               selector: {matchLabels: {app: web}}\n  template:\n    spec:\n      containers:\n\
               \x20       - name: main\n          image: busybox\n          \
               env: [{name: DB_PASSWORD, value: hunter2-read-token}]\n";
    let pi_web = r#"{"name":"pi-web","labels":{"app":"web"}}"#;
    let (code, _, body) = http(&hub, "POST", "/v1/devices", &[&admin], pi_web);
    assert_eq!(code, 200, "{body}");
    let (code, out, err) = hub.apply("web.yaml", web);
    assert_eq!(code, 0, "{out}{err}");
    // The device's desired state and the Deployment's template both hold the value.
    for path in ["/v1/deployments/web", "/v1/devices/pi-web"] {
        let (code, _, body) = http(&hub, "GET", path, &[&read], "");
        assert_eq!(code, 200, "GET {path}: {body}");
        assert!(
            body.contains("DB_PASSWORD") && body.contains("<redacted>"),
            "GET {path}: {body}"
        );
        assert!(!body.contains("hunter2-read-token"), "GET {path}: {body}");
        let (code, _, body) = http(&hub, "GET", path, &[&admin], "");
        assert_eq!(code, 200, "GET {path}: {body}");
        assert!(body.contains("hunter2-read-token"), "GET {path}: {body}");
    }

    // The admin token never goes into a browser.
    let admin_token = hub.admin_token();
    let (code, _, body) = http(&hub, "GET", &format!("/?token={admin_token}"), &[], "");
    assert_eq!(code, 401);
    assert!(!body.contains(&admin_token), "{body}");
}

#[test]
fn the_token_files_are_0600_created_once_and_found_by_the_cli() {
    let mut hub = TestHub::new();
    hub.start();
    let data = hub.data_dir();
    let meta = |n: &str| std::fs::metadata(data.join(n)).unwrap();
    for name in ["api.token", "read.token"] {
        assert_eq!(meta(name).permissions().mode() & 0o777, 0o600, "{name}");
    }
    let before = (hub.admin_token(), hub.read_token());
    let modified = (
        meta("api.token").modified().unwrap(),
        meta("read.token").modified().unwrap(),
    );
    assert_ne!(before.0, before.1);
    hub.stop();
    hub.start();
    assert_eq!(
        (hub.admin_token(), hub.read_token()),
        before,
        "rewritten at a restart"
    );
    let again = (
        meta("api.token").modified().unwrap(),
        meta("read.token").modified().unwrap(),
    );
    assert_eq!(again, modified);
    // The hub never logs a token.
    let logs = hub.logs();
    assert!(
        !logs.contains(&before.0) && !logs.contains(&before.1),
        "a token in the log"
    );

    // The CLI: the admin token from the hub's config; a clear error when unreadable.
    let (code, _, err) = hub.cli(&["device", "add", "pi-cli"]);
    assert_eq!(code, 0, "{err}");
    let (code, url, err) = hub.cli(&["dashboard-url"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(url.trim(), format!("{}/?token={}", hub.api, before.1));
    let elsewhere = hub.dir.path().join("elsewhere.toml");
    let missing = hub.dir.path().join("missing");
    std::fs::write(
        &elsewhere,
        format!("data_dir = {:?}\n", missing.display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new(drover_tests::bin("drover-hub"))
        .args(["--api", &hub.api, "--config"])
        .arg(&elsewhere)
        .args(["get", "devices"])
        .env_remove("DROVER_HUB_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("missing/api.token") && err.contains("run as root"),
        "{err}"
    );
    // A token given wins over the file: the read token reads, and cannot add a device.
    let with_read = |args: &[&str]| {
        std::process::Command::new(drover_tests::bin("drover-hub"))
            .args(["--api", &hub.api])
            .args(args)
            .env("DROVER_HUB_CONFIG", &elsewhere)
            .env("DROVER_HUB_TOKEN", &before.1)
            .output()
            .unwrap()
    };
    assert!(with_read(&["get", "devices"]).status.success());
    let out = with_read(&["device", "add", "pi-nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("read-only token cannot change anything"),
        "{err}"
    );
}

#[test]
fn image_import_refuses_a_symlinked_blob_or_index_without_following_it() {
    let mut hub = TestHub::new();
    hub.start();
    let good = hub.dir.path().join("good");
    oci::busybox_layout(&good, "latest").unwrap();
    // A layout whose blobs are all symbolic links to the good layout's real files:
    // following them would import fine, so only a refusal proves they are not followed.
    let linked = hub.dir.path().join("linked");
    std::fs::create_dir_all(linked.join("blobs/sha256")).unwrap();
    std::fs::copy(good.join("index.json"), linked.join("index.json")).unwrap();
    std::fs::copy(good.join("oci-layout"), linked.join("oci-layout")).ok();
    for e in std::fs::read_dir(good.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), linked.join("blobs/sha256").join(e.file_name()))
            .unwrap();
    }
    let (code, _, err) = hub.cli(&["image", "import", linked.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is a symbolic link") && err.contains("linked/blobs/sha256/"),
        "{err}"
    );
    assert!(!err.contains("hashes to"), "{err}");
    // A linked index.json and a linked blobs/ folder are refused the same way.
    let index_linked = hub.dir.path().join("index-linked");
    std::fs::create_dir_all(&index_linked).unwrap();
    std::os::unix::fs::symlink(good.join("index.json"), index_linked.join("index.json")).unwrap();
    std::os::unix::fs::symlink(good.join("blobs"), index_linked.join("blobs")).unwrap();
    let (code, _, err) = hub.cli(&["image", "import", index_linked.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("index-linked/index.json is a symbolic link"),
        "{err}"
    );
    std::fs::remove_file(index_linked.join("index.json")).unwrap();
    std::fs::copy(good.join("index.json"), index_linked.join("index.json")).unwrap();
    let (code, _, err) = hub.cli(&["image", "import", index_linked.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("index-linked/blobs is a symbolic link"),
        "{err}"
    );
    let (code, out, _) = hub.cli(&["image", "ls", "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        Value::Array(vec![]),
        "nothing imported"
    );
    // The real layout imports.
    let (code, _, err) = hub.cli(&["image", "import", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}
