//! The registry end to end in-process: import real OCI layouts (multi-platform, several
//! tags), then read them through the running `/v2` router over HTTP with Basic auth.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine;
use serde_json::{Value, json};

use super::testoci::{self, LayerBuilder, PlatformImage};
use super::*;
use crate::views::ImportRequest;

fn layer(text: &str) -> Vec<u8> {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    LayerBuilder::new()
        .add_file("hello.txt", text.as_bytes(), 0o644)
        .add_file("big.bin", &big, 0o644)
        .finish()
}

fn platform(arch: &str, variant: Option<&str>) -> PlatformImage {
    PlatformImage {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_owned),
        layers: vec![layer(arch)],
        config: json!({ "Cmd": ["/bin/sh"] }),
    }
}

/// A layout `dir/busybox`: tag `1.36` is a two-platform index, tag `single` one manifest.
fn layout(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("busybox");
    let images = [platform("amd64", None), platform("arm64", Some("v8"))];
    let index = testoci::write_multiplatform_layout(&path, "1.36", &images).unwrap();
    testoci::write_layout(&path, "single", &[layer("one")], json!({})).unwrap();
    (path, index)
}

fn req(path: &Path, name: Option<&str>, tag: Option<&str>) -> ImportRequest {
    ImportRequest {
        path: path.display().to_string(),
        name: name.map(str::to_owned),
        tag: tag.map(str::to_owned),
    }
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_multi_platform_layout_imports_with_all_its_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, index) = layout(tmp.path());
    let reg = Registry::open(&tmp.path().join("registry")).unwrap();
    let report = reg.import(&req(&path, None, None)).unwrap();
    assert_eq!(report.images.len(), 2);
    // 2 layers + 2 configs + 2 manifests + 1 index, and 1 layer + config + manifest.
    assert_eq!(report.blobs_copied, 10);
    let images = reg.images();
    let tags: Vec<_> = images
        .iter()
        .map(|i| (i.name.as_str(), i.tag.as_str()))
        .collect();
    assert_eq!(tags, [("busybox", "1.36"), ("busybox", "single")]);
    assert_eq!(images[0].digest, index);
    assert_eq!(images[0].media_type, OCI_INDEX);
    assert_eq!(images[0].platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(images[1].platforms.len(), 1);
    assert!(images[0].size > images[1].size, "{images:?}");
    // The index survives a reopen; importing again copies nothing.
    let reg = Registry::open(&tmp.path().join("registry")).unwrap();
    assert_eq!(reg.images().len(), 2);
    let again = reg
        .import(&req(&path, Some("tools/bb"), Some("1.36")))
        .unwrap();
    assert_eq!((again.blobs_copied, again.images.len()), (0, 1));
    assert_eq!(reg.images().len(), 3);
    let err = reg.import(&req(&path, None, Some("nope"))).unwrap_err();
    assert!(err.to_string().contains("none is tagged"), "{err}");
    let err = reg.import(&req(&path, Some("Bad Name"), None)).unwrap_err();
    assert!(err.is_invalid(), "{err}");
}

#[test]
fn resolve_gives_the_digest_a_tag_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, index) = layout(tmp.path());
    let reg = Registry::open(&tmp.path().join("registry")).unwrap();
    assert_eq!(reg.resolve("busybox", "1.36"), None);
    reg.import(&req(&path, None, None)).unwrap();
    let pinned = reg.resolve("busybox", "1.36").unwrap();
    assert_eq!(
        pinned.as_str(),
        index,
        "the index, as /v2/busybox/manifests/1.36 serves it"
    );
    let single = reg.resolve("busybox", "single").unwrap();
    assert_ne!(single, pinned);
    assert_eq!(reg.resolve("busybox", "nope"), None);
    assert_eq!(reg.resolve("other", "1.36"), None);
}

#[test]
fn a_digest_mismatch_is_refused_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, index) = layout(tmp.path());
    // Corrupt the arm64 layer (same length, other bytes): its digest no longer matches.
    let idx: Value = serde_json::from_slice(
        &std::fs::read(path.join("blobs/sha256").join(&index[7..])).unwrap(),
    )
    .unwrap();
    let arm = idx["manifests"][1]["digest"].as_str().unwrap();
    let m: Value =
        serde_json::from_slice(&std::fs::read(path.join("blobs/sha256").join(&arm[7..])).unwrap())
            .unwrap();
    let layer = path
        .join("blobs/sha256")
        .join(&m["layers"][0]["digest"].as_str().unwrap()[7..]);
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let root = tmp.path().join("registry");
    let reg = Registry::open(&root).unwrap();
    let err = reg.import(&req(&path, None, None)).unwrap_err();
    assert!(matches!(err, RegistryError::Mismatch { .. }), "{err}");
    assert!(err.is_invalid());
    assert_eq!(count(&root.join("blobs/sha256")), 0, "no blob kept");
    assert_eq!(count(&root.join("tmp")), 0, "staging removed");
    assert!(!root.join("index.json").exists());
    assert!(reg.images().is_empty());
    // A truncated blob (size mismatch) is refused the same way.
    std::fs::write(&layer, b"short").unwrap();
    let err = reg.import(&req(&path, None, None)).unwrap_err();
    assert!(err.to_string().contains("5 bytes"), "{err}");
    assert_eq!(count(&root.join("blobs/sha256")), 0);
}

#[test]
fn a_symlinked_blob_index_or_folder_is_refused_without_being_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, _) = layout(tmp.path());
    let root = tmp.path().join("registry");
    let reg = Registry::open(&root).unwrap();
    // Every blob a link to the good layout's file: following them would import fine.
    let linked = tmp.path().join("linked");
    std::fs::create_dir_all(linked.join("blobs/sha256")).unwrap();
    std::fs::copy(good.join("index.json"), linked.join("index.json")).unwrap();
    for e in std::fs::read_dir(good.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let to = linked.join("blobs/sha256").join(e.file_name());
        std::os::unix::fs::symlink(e.path(), to).unwrap();
    }
    let err = reg
        .import(&req(&linked, None, None))
        .unwrap_err()
        .to_string();
    let at = linked.join("blobs/sha256").display().to_string();
    assert!(
        err.contains(&at) && err.contains("is a symbolic link"),
        "{err}"
    );
    assert_eq!(count(&root.join("blobs/sha256")), 0, "no blob kept");
    assert!(reg.images().is_empty());
    // A linked index.json, then a linked blobs/ folder.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink(good.join("index.json"), other.join("index.json")).unwrap();
    std::os::unix::fs::symlink(good.join("blobs"), other.join("blobs")).unwrap();
    let err = reg
        .import(&req(&other, None, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("other/index.json is a symbolic link"), "{err}");
    std::fs::remove_file(other.join("index.json")).unwrap();
    std::fs::copy(good.join("index.json"), other.join("index.json")).unwrap();
    let err = reg
        .import(&req(&other, None, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("other/blobs is a symbolic link"), "{err}");
    assert!(reg.images().is_empty());
    // The layout folder itself may be a link: the user named it.
    let named = tmp.path().join("named");
    std::os::unix::fs::symlink(&good, &named).unwrap();
    reg.import(&req(&named, None, None)).unwrap();
}

#[test]
fn import_errors_name_the_file_and_never_its_content_or_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = layout(tmp.path());
    let reg = Registry::open(&tmp.path().join("registry")).unwrap();
    // A FIFO where a blob should be is refused at once, not read forever.
    let blobs = path.join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        &victim,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    );
    made.unwrap();
    let err = reg.import(&req(&path, None, None)).unwrap_err().to_string();
    assert!(err.contains("is not a regular file"), "{err}");
    // Same size, other bytes: the error names the file, never the hash it found.
    std::fs::remove_file(&victim).unwrap();
    let mut other = bytes.clone();
    other[0] ^= 0xff;
    std::fs::write(&victim, &other).unwrap();
    let err = reg.import(&req(&path, None, None)).unwrap_err().to_string();
    let found = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&other));
    assert!(!err.contains(&found), "{err}");
    assert!(err.contains(&victim.display().to_string()), "{err}");
    // index.json that quotes a secret in the wrong place: not echoed.
    std::fs::write(path.join("index.json"), r#"{"manifests": "s3cret-value"}"#).unwrap();
    let err = reg.import(&req(&path, None, None)).unwrap_err().to_string();
    assert!(
        !err.contains("s3cret") && err.contains("index.json:1:"),
        "{err}"
    );
}

/// Serves the `/v2` routes on a free port; device `pi-1` is registered with registry
/// password `secret` (its MQTT password, derived from `cred`, is another).
fn serve(reg: Registry) -> String {
    let keys = drover_protocol::keys::DeviceKeys {
        registry_password: "secret".to_owned(),
        ..drover_protocol::keys::DeviceKeys::from_credential(b"cred")
    };
    let creds: HashMap<String, _> = [("pi-1".to_owned(), keys)].into();
    let state = RegistryState {
        registry: Arc::new(reg),
        creds: Arc::new(RwLock::new(creds)),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, router(state)).await.unwrap();
        });
    });
    format!("http://{addr}")
}

struct Http {
    base: String,
    agent: ureq::Agent,
}

struct Answer {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

impl Http {
    fn new(base: String) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Http { base, agent }
    }

    fn call(&self, method: &str, path: &str, auth: Option<&str>, range: Option<&str>) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(a) = auth {
            let b64 = base64::engine::general_purpose::STANDARD.encode(a);
            req = req.header("Authorization", format!("Basic {b64}"));
        }
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let mut resp = self.agent.run(req.body(()).unwrap()).unwrap();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .unwrap()
        };
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body,
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some("pi-1:secret"), None)
    }
}

fn error_code(a: &Answer) -> String {
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[test]
fn devices_read_manifests_and_blobs_over_the_distribution_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, index) = layout(tmp.path());
    let reg = Registry::open(&tmp.path().join("registry")).unwrap();
    reg.import(&req(&path, None, None)).unwrap();
    reg.import(&req(&path, Some("tools/busybox"), Some("1.36")))
        .unwrap();
    let http = Http::new(serve(reg));

    // Authentication.
    for auth in [None, Some("pi-1:wrong"), Some("pi-2:secret"), Some("pi-1")] {
        let a = http.call("GET", "/v2/", auth, None);
        assert_eq!(a.status, 401, "{auth:?}");
        assert_eq!(a.header("www-authenticate"), "Basic realm=\"drover-hub\"");
        assert_eq!(error_code(&a), "UNAUTHORIZED");
    }
    let a = http.call("GET", "/v2/busybox/manifests/1.36", None, None);
    assert_eq!(a.status, 401);
    let a = http.get("/v2/");
    assert_eq!((a.status, a.body.as_slice()), (200, b"{}".as_slice()));

    // The tag's image index, then by digest, then a platform's manifest, by HEAD too.
    let a = http.get("/v2/busybox/manifests/1.36");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), OCI_INDEX);
    assert_eq!(a.header("docker-content-digest"), index);
    assert_eq!(Digest::of(&a.body).as_str(), index);
    let idx: Value = serde_json::from_slice(&a.body).unwrap();
    let arm = idx["manifests"][1]["digest"].as_str().unwrap().to_owned();
    let b = http.get(&format!("/v2/tools/busybox/manifests/{index}"));
    assert_eq!((b.status, &b.body), (200, &a.body));
    let h = http.call(
        "HEAD",
        "/v2/busybox/manifests/1.36",
        Some("pi-1:secret"),
        None,
    );
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), a.body.len().to_string());
    assert_eq!(h.header("docker-content-digest"), index);
    let m = http.get(&format!("/v2/busybox/manifests/{arm}"));
    assert_eq!((m.status, m.header("content-type")), (200, OCI_MANIFEST));
    let manifest: Value = serde_json::from_slice(&m.body).unwrap();

    // A layer, whole and from an offset (resume); HEAD gives its length.
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let size = manifest["layers"][0]["size"].as_u64().unwrap() as usize;
    let blob_path = format!("/v2/busybox/blobs/{layer}");
    let full = http.get(&blob_path);
    assert_eq!((full.status, full.body.len()), (200, size));
    assert_eq!(Digest::of(&full.body).as_str(), layer);
    assert_eq!(full.header("docker-content-digest"), layer);
    let part = http.call("GET", &blob_path, Some("pi-1:secret"), Some("bytes=100-"));
    assert_eq!(part.status, 206);
    assert_eq!(part.body, full.body[100..]);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 100-{}/{size}", size - 1)
    );
    let mid = http.call("GET", &blob_path, Some("pi-1:secret"), Some("bytes=10-19"));
    assert_eq!((mid.status, &mid.body[..]), (206, &full.body[10..20]));
    let past = http.call(
        "GET",
        &blob_path,
        Some("pi-1:secret"),
        Some(&format!("bytes={size}-")),
    );
    assert_eq!(past.status, 416);
    let h = http.call("HEAD", &blob_path, Some("pi-1:secret"), None);
    assert_eq!(
        (h.status, h.header("content-length")),
        (200, size.to_string().as_str())
    );

    let t = http.get("/v2/busybox/tags/list");
    let tags: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        tags,
        json!({ "name": "busybox", "tags": ["1.36", "single"] })
    );

    // Unknown things, as OCI errors.
    let cases = [
        ("/v2/nope/manifests/1.36", "NAME_UNKNOWN"),
        ("/v2/busybox/manifests/2.0", "MANIFEST_UNKNOWN"),
        (
            "/v2/busybox/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "BLOB_UNKNOWN",
        ),
    ];
    for (p, code) in cases {
        let a = http.get(p);
        assert_eq!((a.status, error_code(&a)), (404, code.to_owned()), "{p}");
    }
    // Nothing but a checked digest reaches the file system.
    for p in [
        "/v2/busybox/blobs/sha256:..%2F..%2Findex.json",
        "/v2/busybox/blobs/%2E%2E%2F%2E%2E%2Findex.json",
        "/v2/busybox/blobs/../../index.json",
    ] {
        assert_eq!(http.get(p).status, 404, "{p}");
    }
    // No push.
    let a = http.call("PUT", "/v2/busybox/manifests/x", Some("pi-1:secret"), None);
    assert_eq!(a.status, 405);
}

#[test]
fn byte_ranges_parse() {
    use super::http::parse_range;
    assert_eq!(parse_range("bytes=0-", 10), Some(Some((0, 10))));
    assert_eq!(parse_range("bytes=3-4", 10), Some(Some((3, 5))));
    assert_eq!(parse_range("bytes=3-400", 10), Some(Some((3, 10))));
    assert_eq!(parse_range("bytes=10-", 10), Some(None));
    assert_eq!(parse_range("bytes=5-2", 10), Some(None));
    assert_eq!(parse_range("bytes=-5", 10), None);
    assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
    assert_eq!(parse_range("items=0-", 10), None);
}
