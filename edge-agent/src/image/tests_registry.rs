//! Registry client and pull tests against an in-process fake HTTP server (std
//! `TcpListener` on 127.0.0.1:0): resume, digest mismatch, retries, auth, platform
//! choice, offline fallback, and the budget never removing an image in use.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::client::{Client, Retry};
use super::digest::Digest;
use super::layout::{Descriptor, pick_platform};
use super::platform::{HostPlatform, Platform};
use super::testutil::{self, LayerBuilder, PlatformImage};
use super::{ImageError, ImageStore, Progress, PullConfig};

#[derive(Clone, Debug)]
pub struct Req {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this many body bytes (Content-Length stays full).
    pub cut_after: Option<usize>,
}

impl Resp {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.into(),
            cut_after: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Req, usize) -> Resp + Send + Sync;

/// A one-connection-at-a-time HTTP/1.1 server; every answer closes the connection.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Req, usize) -> Resp + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let n = AtomicUsize::new(0);
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let i = n.fetch_add(1, Ordering::Relaxed);
                        serve(stream, &*handler, &log2, i);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    /// Stops accepting: later connections are refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>, i: usize) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Req { path, headers };
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req, i);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = &resp.body[..resp
        .cut_after
        .unwrap_or(resp.body.len())
        .min(resp.body.len())];
    let _ = out
        .write_all(head.as_bytes())
        .and_then(|()| out.write_all(body));
    let _ = out.flush();
}

/// Serves the OCI layout at `dir` as repository `repo` (tags from index.json).
pub fn serve_layout(dir: PathBuf) -> impl Fn(&Req, usize) -> Resp + Send + Sync {
    move |req, _| {
        let blob = |hex: &str| std::fs::read(dir.join("blobs/sha256").join(hex)).ok();
        if let Some(rest) = req.path.strip_prefix("/v2/app/manifests/") {
            let hex = match rest.strip_prefix("sha256:") {
                Some(h) => Some(h.to_string()),
                None => tag_digest(&dir, rest),
            };
            return match hex.and_then(|h| blob(&h)) {
                Some(b) => {
                    let mt = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["mediaType"]
                        .as_str()
                        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                        .to_string();
                    Resp::new(200, b).header("Content-Type", &mt)
                }
                None => Resp::new(404, "{}"),
            };
        }
        if let Some(d) = req.path.strip_prefix("/v2/app/blobs/sha256:") {
            return blob(d).map_or_else(|| Resp::new(404, ""), |b| Resp::new(200, b));
        }
        Resp::new(404, "")
    }
}

fn tag_digest(dir: &Path, tag: &str) -> Option<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
    index["manifests"].as_array()?.iter().find_map(|m| {
        (m["annotations"]["org.opencontainers.image.ref.name"] == tag).then(|| {
            m["digest"]
                .as_str()?
                .strip_prefix("sha256:")
                .map(str::to_string)
        })?
    })
}

fn fast(mut c: Client) -> Client {
    c.retry = Retry {
        attempts: 5,
        first_delay: Duration::from_millis(5),
    };
    c
}

fn blob_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn resumes_a_cut_download_with_range() {
    let data = blob_bytes();
    let digest = Digest::of(&data);
    let served = data.clone();
    let srv = FakeServer::start(move |req, i| match (i, req.header("range")) {
        (0, _) => Resp {
            cut_after: Some(100_000),
            ..Resp::new(200, served.clone())
        },
        (_, Some(r)) => {
            let from: usize = r["bytes=".len()..].trim_end_matches('-').parse().unwrap();
            Resp::new(206, served[from..].to_vec()).header(
                "Content-Range",
                &format!("bytes {from}-{}/{}", served.len() - 1, served.len()),
            )
        }
        (_, None) => Resp::new(500, ""),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut c = fast(Client::new(&srv.url(), "app", None, false));
    let mut seen = Vec::new();
    let path = c
        .blob_to_file(&digest, Some(data.len() as u64), dir.path(), &mut |n| {
            seen.push(n)
        })
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].header("range"), Some("bytes=100000-"));
    assert!(seen.contains(&100_000) && seen.last() == Some(&300_000));
    assert!(
        !dir.path()
            .join(format!("{}.partial", digest.hex()))
            .exists()
    );
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let data = blob_bytes();
    let digest = Digest::of(&data);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("{}.partial", digest.hex())),
        &data[..5000],
    )
    .unwrap();
    let served = data.clone();
    let srv = FakeServer::start(move |_, _| Resp::new(200, served.clone()));
    let mut c = fast(Client::new(&srv.url(), "app", None, false));
    let path = c
        .blob_to_file(&digest, None, dir.path(), &mut |_| {})
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(srv.requests()[0].header("range"), Some("bytes=5000-"));
}

#[test]
fn digest_mismatch_leaves_nothing_behind() {
    let digest = Digest::of(b"expected content");
    let srv = FakeServer::start(|_, _| Resp::new(200, "evil content"));
    let dir = tempfile::tempdir().unwrap();
    let mut c = fast(Client::new(&srv.url(), "app", None, false));
    let err = c
        .blob_to_file(&digest, None, dir.path(), &mut |_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&digest.to_string()) && msg.contains(&Digest::of(b"evil content").to_string()),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Too many bytes for the declared size: cut off, refused, removed.
    let err = c
        .blob_to_file(&digest, Some(3), dir.path(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn retries_transient_failures_then_gives_up() {
    let data = b"blob".to_vec();
    let digest = Digest::of(&data);
    let srv = FakeServer::start(move |_, i| match i {
        0 => Resp::new(503, ""),
        1 => Resp::new(429, ""),
        _ => Resp::new(200, data.clone()),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut c = fast(Client::new(&srv.url(), "app", None, false));
    c.blob_to_file(&digest, Some(4), dir.path(), &mut |_| {})
        .unwrap();
    assert_eq!(srv.requests().len(), 3);

    let always = FakeServer::start(|_, _| Resp::new(502, ""));
    let mut c = fast(Client::new(&always.url(), "app", None, false));
    let err = c.manifest("latest").unwrap_err();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    assert_eq!(always.requests().len(), 5);
    let not_found = FakeServer::start(|_, _| Resp::new(404, ""));
    let mut c = fast(Client::new(&not_found.url(), "app", None, false));
    assert!(matches!(
        c.manifest("latest"),
        Err(ImageError::Registry { .. })
    ));
    assert_eq!(not_found.requests().len(), 1);
}

#[test]
fn bearer_token_flow_with_basic_credentials() {
    let addr = Arc::new(Mutex::new(String::new()));
    let a2 = addr.clone();
    let srv = FakeServer::start(move |req, _| {
        if req.path.starts_with("/token") {
            assert!(
                req.path.contains("scope=repository%3Aapp%3Apull"),
                "{}",
                req.path
            );
            assert_eq!(
                req.header("authorization"),
                Some(super::auth::basic("u", "p").as_str())
            );
            return Resp::new(200, r#"{"token":"tok"}"#);
        }
        if req.header("authorization") == Some("Bearer tok") {
            return Resp::new(200, "{}")
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
        }
        let realm = format!("http://{}/token", a2.lock().unwrap());
        Resp::new(401, "").header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="{realm}",service="fake",scope="repository:app:pull""#),
        )
    });
    *addr.lock().unwrap() = srv.addr.to_string();
    let mut c = fast(Client::new(&srv.url(), "app", Some(("u", "p")), false));
    let (body, mt) = c.manifest("latest").unwrap();
    assert_eq!(
        (body.as_slice(), mt.as_str()),
        (&b"{}"[..], "application/vnd.oci.image.manifest.v1+json")
    );
}

#[test]
fn basic_challenge_without_credentials_is_an_auth_error() {
    let srv = FakeServer::start(|req, _| match req.header("authorization") {
        Some(_) => Resp::new(200, "{}"),
        None => Resp::new(401, "").header("WWW-Authenticate", r#"Basic realm="r""#),
    });
    let mut c = fast(Client::new(&srv.url(), "app", None, false));
    let err = c.manifest("latest").unwrap_err();
    assert!(
        matches!(err, ImageError::Auth { .. }) && err.to_string().contains("credentials"),
        "{err}"
    );
    let mut c = fast(Client::new(&srv.url(), "app", Some(("u", "p")), false));
    assert!(c.manifest("latest").is_ok());
}

fn desc(arch: &str, variant: Option<&str>) -> Descriptor {
    let mut platform = json!({"os": "linux", "architecture": arch});
    if let Some(v) = variant {
        platform["variant"] = json!(v);
    }
    serde_json::from_value(
        json!({"digest": format!("sha256:{}", "a".repeat(64)), "platform": platform}),
    )
    .unwrap()
}

#[test]
fn armv7_never_takes_v6_or_arm64_and_platformless_index_fails() {
    let armv7 = HostPlatform::for_arch("arm", 7);
    let list = vec![
        desc("arm", Some("v6")),
        desc("arm64", Some("v8")),
        desc("arm", Some("v7")),
    ];
    let picked = pick_platform(list, &armv7, "r").unwrap();
    assert_eq!(picked.platform.unwrap().variant.as_deref(), Some("v7"));
    let list = vec![desc("arm64", Some("v8")), desc("amd64", None)];
    let err = pick_platform(list, &HostPlatform::for_arch("arm", 6), "r").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux/arm64/v8") && msg.contains("linux/amd64"),
        "{msg}"
    );
    let none: Descriptor = serde_json::from_value(json!({"digest": "sha256:x"})).unwrap();
    let err = pick_platform(vec![none], &armv7, "r").unwrap_err();
    assert!(
        matches!(err, ImageError::PlatformlessIndex { entries: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("without a `platform`"));
    let _ = Platform::default();
}

fn small_image(tag_file: &str) -> PlatformImage {
    PlatformImage {
        os: "linux".into(),
        architecture: testutil::host_arch().into(),
        variant: None,
        layers: vec![
            LayerBuilder::new()
                .add_file(tag_file, &vec![7u8; 200_000], 0o644)
                .finish(),
        ],
        config: json!({"Cmd": ["/bin/sh"]}),
    }
}

#[test]
fn pulls_with_progress_then_works_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let other = PlatformImage {
        architecture: "s390x".into(),
        ..small_image("other")
    };
    testutil::write_multiplatform_layout(&layout, "v1", &[other, small_image("mine")]).unwrap();
    let mut srv = FakeServer::start(serve_layout(layout));
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let reference = format!("{}/app:v1", srv.addr);
    let calls = Mutex::new(Vec::<Progress>::new());
    let img = store
        .prepare_with(&reference, &PullConfig::default(), &|p| {
            calls.lock().unwrap().push(p)
        })
        .unwrap();
    assert_eq!(img.config.cmd, ["/bin/sh"]);
    assert!(img.layers[0].join("mine").is_file());
    let calls = calls.into_inner().unwrap();
    let last = calls.last().unwrap();
    assert!(
        last.total_bytes > 0 && last.done_bytes == last.total_bytes,
        "{calls:?}"
    );
    // Layer blobs are gone once extracted; manifest and config stay.
    let blobs: Vec<_> = std::fs::read_dir(tmp.path().join("images/blobs/sha256"))
        .unwrap()
        .collect();
    assert_eq!(blobs.len(), 2);
    let refs = std::fs::read_to_string(tmp.path().join("images/refs.json")).unwrap();
    assert!(refs.contains(&img.manifest_digest));

    srv.stop();
    let again = store
        .prepare_with(&reference, &PullConfig::default(), &|_| {})
        .unwrap();
    assert_eq!(again.manifest_digest, img.manifest_digest);
    let never = format!("{}/app:v2", srv.addr);
    let err = store
        .prepare_with(&never, &PullConfig::default(), &|_| {})
        .unwrap_err();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
}

#[test]
fn low_disk_refuses_the_download() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    testutil::write_multiplatform_layout(&layout, "v1", &[small_image("x")]).unwrap();
    let srv = FakeServer::start(serve_layout(layout));
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let cfg = PullConfig {
        min_free_disk: u64::MAX / 2,
        ..PullConfig::default()
    };
    let err = store
        .prepare_with(&format!("{}/app:v1", srv.addr), &cfg, &|_| {})
        .unwrap_err();
    assert!(matches!(err, ImageError::LowDisk { .. }), "{err}");
    assert!(store.disk_free_bytes().is_some_and(|f| f > 0));
}

#[test]
fn gc_removes_oldest_unused_and_never_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let mut digests = Vec::new();
    for name in ["a", "b", "c"] {
        let layout = tmp.path().join(name);
        testutil::write_multiplatform_layout(&layout, "v1", &[small_image(name)]).unwrap();
        let img = store
            .prepare(&format!("oci:{}:v1", layout.display()))
            .unwrap();
        digests.push(img.manifest_digest);
        std::thread::sleep(Duration::from_millis(5));
    }
    // `a` was used last: `b` is the oldest unused image.
    store.touch(&digests[0]).unwrap();
    let in_use: BTreeSet<String> = [digests[2].clone()].into();
    let total = store.store_bytes();
    let report = store.gc(&in_use, total - 1).unwrap();
    assert_eq!(report.removed_images, vec![digests[1].clone()]);
    assert!(!report.over_budget && report.bytes_after < total);
    let report = store.gc(&in_use, 0).unwrap();
    assert_eq!(report.removed_images, vec![digests[0].clone()]);
    assert!(report.over_budget && report.bytes_after > 0);
    let c = tmp.path().join("c");
    let reference = format!("oci:{}:v1", c.display());
    assert!(
        store.resolved(&reference).is_some(),
        "the image in use must stay whole"
    );
    assert!(
        store
            .resolved(&format!("oci:{}:v1", tmp.path().join("a").display()))
            .is_none()
    );
}

#[test]
fn a_pinned_reference_refuses_a_swapped_manifest_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    let pinned_index =
        testutil::write_multiplatform_layout(&good, "v1", &[small_image("good")]).unwrap();
    let evil = tmp.path().join("evil");
    let evil_index =
        testutil::write_multiplatform_layout(&evil, "v1", &[small_image("evil")]).unwrap();
    // Asked for the pinned digest, the registry answers with another (valid) image.
    let (evil_hex, honest) = (evil_index[7..].to_string(), serve_layout(evil.clone()));
    let swapping = FakeServer::start(move |req, i| {
        if req.path.starts_with("/v2/app/manifests/sha256:") {
            let bytes = std::fs::read(evil.join("blobs/sha256").join(&evil_hex)).unwrap();
            return Resp::new(200, bytes)
                .header("Content-Type", "application/vnd.oci.image.index.v1+json");
        }
        honest(req, i)
    });
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let reference = format!("{}/app@{pinned_index}", swapping.addr);
    let err = store
        .prepare_with(&reference, &PullConfig::default(), &|_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::PinnedMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&format!("app@{pinned_index} has digest {evil_index}")),
        "{msg}"
    );
    let stored =
        |dir: &str| std::fs::read_dir(tmp.path().join("images").join(dir)).map_or(0, |d| d.count());
    assert_eq!((stored("blobs/sha256"), stored("layers/sha256")), (0, 0));
    assert!(!tmp.path().join("images/refs.json").exists());
    // The registry serving what was signed: accepted.
    let srv = FakeServer::start(serve_layout(good));
    let reference = format!("{}/app@{pinned_index}", srv.addr);
    let img = store
        .prepare_with(&reference, &PullConfig::default(), &|_| {})
        .unwrap();
    assert!(img.layers[0].join("good").is_file());
}

#[test]
fn credentials_never_go_to_a_token_realm_on_another_host() {
    let port = Arc::new(Mutex::new(0u16));
    let p2 = port.clone();
    let srv = FakeServer::start(move |req, _| {
        if req.path.starts_with("/token") {
            return Resp::new(200, r#"{"token":"tok"}"#);
        }
        // Same server, but named by another host name than the registry's.
        let realm = format!("http://localhost:{}/token", p2.lock().unwrap());
        Resp::new(401, "").header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}""#))
    });
    *port.lock().unwrap() = srv.addr.port();
    let mut c = fast(Client::new(&srv.url(), "app", Some(("u", "p")), false));
    let err = c.manifest("latest").unwrap_err();
    assert!(
        matches!(err, ImageError::Auth { .. }) && err.to_string().contains("another host"),
        "{err}"
    );
    assert!(
        srv.requests()
            .iter()
            .all(|r| !r.path.starts_with("/token") && r.header("authorization").is_none()),
        "nothing was sent to the realm, no credential anywhere"
    );
}
