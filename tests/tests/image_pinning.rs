//! End-to-end: a real agent pulling an image pinned by digest (what the hub signs once it
//! pins `hub:` tags at apply) refuses a registry that answers the pinned digest with other
//! content, reports why in its status and stores nothing; served the right manifest, the
//! same pin runs. The registry is a tiny HTTP server in this test (std `TcpListener` on
//! 127.0.0.1:0) so that it can lie. Needs root (containers, layer extraction).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drover_tests::agent::{TestAgent, last_error};
use drover_tests::{oci, require_root, wait_for};
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Serves repository `app` from one OCI layout; while `swap` is set, a request for the
/// manifest `pinned` gets the manifest `other` instead (a tampering mirror or a registry
/// whose tag was moved under a digest-named path).
struct LyingRegistry {
    port: u16,
    swap: Arc<AtomicBool>,
}

impl LyingRegistry {
    fn start(layout: PathBuf, pinned: String, other: String) -> LyingRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let swap = Arc::new(AtomicBool::new(true));
        let lying = swap.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let wanted = |digest: &str| match lying.load(Ordering::Relaxed) {
                    true if digest == pinned => other.clone(),
                    _ => digest.to_owned(),
                };
                answer(stream, &layout, &wanted);
            }
        });
        LyingRegistry { port, swap }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// One request, one answer, connection closed.
fn answer(stream: TcpStream, layout: &Path, wanted: &dyn Fn(&str) -> String) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:")?;
        std::fs::read(layout.join("blobs/sha256").join(hex)).ok()
    };
    let (status, media_type, body) = if let Some(r) = path.strip_prefix("/v2/app/manifests/") {
        match blob(&wanted(r)) {
            Some(b) => (200, MANIFEST_TYPE, b),
            None => (404, "application/json", b"{}".to_vec()),
        }
    } else if let Some(d) = path.strip_prefix("/v2/app/blobs/") {
        blob(d).map_or((404, "text/plain", vec![]), |b| {
            (200, "application/octet-stream", b)
        })
    } else {
        (404, "text/plain", vec![])
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = stream;
    let _ = out
        .write_all(head.as_bytes())
        .and_then(|()| out.write_all(&body));
}

fn workload(name: &str, image: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  stopGracePeriod: 1s\n  containers:\n    - name: main\n      image: {image}\n      command: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n"
    )
}

/// Every file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_pinned_image_is_refused_when_the_registry_serves_other_content_and_runs_when_it_does_not() {
    if !require_root("a_pinned_image_is_refused_when_the_registry_serves_other_content") {
        return;
    }
    let mut a = TestAgent::new("pinning");
    // One layout, two images: the one the digest pins, and an impostor with an extra file.
    let layout = a.dir.path().join("layout");
    oci::busybox_layout(&layout, "good").unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let good = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let busybox_tar = {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(layout.join("blobs/sha256").join(&good[7..])).unwrap(),
        )
        .unwrap();
        let hex = &manifest["layers"][0]["digest"].as_str().unwrap()[7..];
        let gz = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
        tar
    };
    let marker = oci::LayerBuilder::new()
        .add_file("etc/impostor", b"not what was signed", 0o644)
        .finish();
    let evil = oci::write_layout(
        &layout,
        "evil",
        &[busybox_tar, marker],
        json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
    )
    .unwrap();
    assert_ne!(good, evil);
    let reg = LyingRegistry::start(layout, good.clone(), evil.clone());
    a.append_config(&format!(
        "[[images.registries]]\nhost = \"{}\"\ninsecure = true\n",
        reg.host()
    ));
    a.start();

    a.write_manifest(
        "swapped.yaml",
        &workload("swapped", &format!("{}/app@{good}", reg.host())),
    );
    let ps = a.wait_ps("the swapped manifest refused", T, |p| {
        p["workloads"][0]["phase"] == "Error"
    });
    let err = last_error(&ps, "swapped");
    eprintln!("refused with: {err}");
    assert!(
        err.contains("does not match the pinned digest")
            && err.contains(&format!("app@{good} has digest {evil}")),
        "{err}"
    );
    let images = a.state.join("images");
    let stored: Vec<_> = files(&images.join("blobs"))
        .into_iter()
        .chain(files(&images.join("layers")))
        .chain(files(&images.join("manifests")))
        .collect();
    assert!(stored.is_empty(), "stored from a refused pull: {stored:?}");
    let refs = std::fs::read_to_string(images.join("refs.json")).unwrap_or_default();
    assert!(!refs.contains(&evil), "{refs}");
    assert!(!a.state.join("containers/swapped.main").exists());

    // The registry now serves what was signed: the same pin (tag written too) runs.
    reg.swap.store(false, Ordering::Relaxed);
    // (Its manifest carries labels too: `ps -o json` shows them with the workload.)
    let honest = format!("{}/app:good@{good}", reg.host());
    let labelled = workload("honest", &honest).replace(
        "metadata: {name: honest}",
        "metadata: {name: honest, labels: {app: pinned, example.com/tier: edge}}",
    );
    a.write_manifest("honest.yaml", &labelled);
    let pid = wait_for("the pinned image running", T, || {
        a.running_pid("honest", "main")
    });
    assert!(pid > 0);
    let ps = a.ps().unwrap();
    assert_eq!(last_error(&ps, "honest"), "null");
    let honest_status = ps["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "honest")
        .unwrap();
    assert_eq!(
        honest_status["labels"],
        json!({"app": "pinned", "example.com/tier": "edge"})
    );
    assert!(
        !a.state
            .join("images/manifests")
            .join(format!("{}.json", &evil[7..]))
            .exists(),
        "the impostor was never recorded"
    );
    assert!(
        a.state
            .join("images/manifests")
            .join(format!("{}.json", &good[7..]))
            .exists(),
        "the pinned image is recorded under its digest"
    );
}
