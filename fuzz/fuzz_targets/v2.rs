//! The hub's `/v2` routes (OCI distribution API for devices) through the real axum router
//! over a registry in a temporary folder holding one repository `tools/app` (tag `1`, one
//! manifest, one blob). Input: byte 0 picks the method, byte 1 the flags (bit 0: the
//! registered device's credential, else line 3 is the raw `Authorization`; bit 1: line 2
//! is a `Range` header); line 1 is the request target. Never a panic; without the
//! credential nothing but 401/404/405 (or a 400 from the router); a blob or manifest is
//! served only as the bytes stored, or a range of them.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, header};
use drover_hub::registry::{
    Digest, Index, ManifestEntry, Registry, RegistryState, Repository, TagEntry, router,
};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

use drover_fuzz::v2::{BASIC, BLOB, MANIFEST};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const METHODS: [Method; 4] = [Method::GET, Method::HEAD, Method::POST, Method::DELETE];

struct Setup {
    rt: tokio::runtime::Runtime,
    app: Router,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("drover-fuzz-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let reg = Registry::open(&root).unwrap_or_else(|e| panic!("{e}"));
        let (m, b) = (Digest::of(MANIFEST), Digest::of(BLOB));
        std::fs::write(reg.blob_path(&m), MANIFEST).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(reg.blob_path(&b), BLOB).unwrap_or_else(|e| panic!("{e}"));
        let tag = TagEntry {
            digest: m.to_string(),
            media_type: MANIFEST_TYPE.into(),
            platforms: vec!["linux/arm64".into()],
            size: (MANIFEST.len() + BLOB.len()) as u64,
        };
        let entry = ManifestEntry {
            media_type: MANIFEST_TYPE.into(),
            size: MANIFEST.len() as u64,
        };
        let repo = Repository {
            tags: [("1".to_owned(), tag)].into(),
            manifests: [(m.to_string(), entry)].into(),
            blobs: [(b.to_string(), BLOB.len() as u64)].into(),
        };
        let index = Index {
            repositories: [("tools/app".to_owned(), repo)].into(),
        };
        index
            .save(&root.join("index.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let reg = Registry::open(&root).unwrap_or_else(|e| panic!("{e}"));
        // Registry password `secret` (BASIC); the other keys as derived from a credential.
        let keys = drover_protocol::keys::DeviceKeys {
            registry_password: "secret".to_owned(),
            ..drover_protocol::keys::DeviceKeys::from_credential(b"fuzz-credential")
        };
        let creds: HashMap<String, _> = [("pi-1".to_owned(), keys)].into();
        let state = RegistryState {
            registry: Arc::new(reg),
            creds: Arc::new(RwLock::new(creds)),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        Setup {
            rt,
            app: router(state),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [m, flags, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (target, range, auth) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    let authed = flags & 1 != 0;
    let method = METHODS[usize::from(*m) % METHODS.len()].clone();
    let head = method == Method::HEAD;
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header(header::AUTHORIZATION, if authed { BASIC } else { auth });
    if flags & 2 != 0 {
        req = req.header(header::RANGE, range);
    }
    let Ok(req) = req.body(Body::empty()) else {
        return;
    };
    let path = req.uri().path().to_owned();
    let s = setup();
    let (status, body) = s.rt.block_on(async {
        let resp = s
            .app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {});
        let status = resp.status().as_u16();
        (
            status,
            to_bytes(resp.into_body(), 1 << 20)
                .await
                .map(|b| b.to_vec()),
        )
    });
    let body = body.unwrap_or_else(|e| panic!("body of a {status} answer: {e}"));
    // The registry takes `Basic` or `basic` and trims the base64 (as HTTP trims a field
    // value's surrounding whitespace): those spellings of the credential are valid too.
    let b64 = |v: &str| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
            .map(|b| b.trim().to_owned())
    };
    let valid = authed || (b64(auth).is_some() && b64(auth) == b64(BASIC));
    if !valid {
        assert!(
            matches!(status, 400 | 401 | 404 | 405),
            "{status} without credentials"
        );
    }
    match status {
        200 if head => assert!(body.is_empty()),
        200 if path.contains("/blobs/") => assert!(body == BLOB),
        200 if path.contains("/manifests/") => assert!(body == MANIFEST),
        206 if head => assert!(body.is_empty()),
        206 => assert!(!body.is_empty() && BLOB.windows(body.len()).any(|w| w == body)),
        _ => {}
    }
});
