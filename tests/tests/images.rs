//! End-to-end: agents get real images the way users ship them — from an OCI registry
//! (Debian's docker-registry, filled with skopeo) and from their hub — and run them as
//! containers; a multi-platform index yields this host's image; a platform-less index is
//! a clear error in the workload's status. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use drover_tests::agent::{TestAgent, last_error};
use drover_tests::hub::TestHub;
use drover_tests::registry::Registry;
use drover_tests::{oci, require_root, wait_for};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn workload(name: &str, image: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  stopGracePeriod: 1s\n  containers:\n    - name: main\n      image: {image}\n      command: [/bin/sh, -c, \"echo pulled; while true; do sleep 1; done\"]\n"
    )
}

fn running(a: &TestAgent, wl: &str) -> Option<u32> {
    a.running_pid(wl, "main")
}

/// The uncompressed tar of the (only) layer of a busybox layout.
fn busybox_tar(layout: &Path) -> Vec<u8> {
    let blob = |hex: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(hex.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let gz = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
    tar
}

/// A busybox image whose index lists this host's platform and one other.
fn multiplatform_busybox(dir: &Path) -> std::path::PathBuf {
    let single = dir.join("bb-single");
    oci::busybox_layout(&single, "latest").unwrap();
    let other = if oci::host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    // Reuse busybox's layer for the host; the other platform gets a marker layer.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(single.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(single.join("blobs/sha256").join(&manifest_digest)).unwrap(),
    )
    .unwrap();
    let layer_hex = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let gz = std::fs::read(single.join("blobs/sha256").join(layer_hex)).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
    let layout = dir.join("bb-multi");
    let cfg = json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]});
    let images = [
        oci::PlatformImage {
            os: "linux".into(),
            architecture: oci::host_arch().into(),
            variant: None,
            layers: vec![tar],
            config: cfg.clone(),
        },
        oci::PlatformImage {
            os: "linux".into(),
            architecture: other.into(),
            variant: None,
            layers: vec![
                oci::LayerBuilder::new()
                    .add_file("wrong-platform", b"x", 0o644)
                    .finish(),
            ],
            config: cfg,
        },
    ];
    oci::write_multiplatform_layout(&layout, "latest", &images).unwrap();
    layout
}

#[test]
fn agent_pulls_from_a_registry_and_runs_it_and_picks_its_platform() {
    if !require_root("agent_pulls_from_a_registry_and_runs_it_and_picks_its_platform") {
        return;
    }
    let reg = Registry::start();
    let mut a = TestAgent::new("pull");
    let bb = a.dir.path().join("busybox");
    oci::busybox_layout(&bb, "latest").unwrap();
    reg.push(&bb, "latest", "tools/busybox", false);
    reg.push(
        &multiplatform_busybox(a.dir.path()),
        "latest",
        "multi",
        true,
    );
    a.append_config(&format!(
        "[[images.registries]]\nhost = \"{}\"\ninsecure = true\n",
        reg.host()
    ));
    a.start();
    let t0 = Instant::now();
    a.write_manifest(
        "bb.yaml",
        &workload("bb", &format!("{}/tools/busybox:latest", reg.host())),
    );
    wait_for("busybox pulled from the registry and running", T, || {
        running(&a, "bb")
    });
    eprintln!("registry pull + start: {:?}", t0.elapsed());
    a.write_manifest(
        "multi.yaml",
        &workload("multi", &format!("{}/multi:latest", reg.host())),
    );
    wait_for(
        "the host platform of a multi-platform index running",
        T,
        || running(&a, "multi"),
    );
    let c = a.container("multi", "main").unwrap();
    assert!(c["image"].as_str().unwrap().ends_with("/multi:latest"));
}

#[test]
fn a_platformless_index_and_a_missing_image_are_clear_errors_in_status() {
    if !require_root("a_platformless_index_and_a_missing_image_are_clear_errors_in_status") {
        return;
    }
    let reg = Registry::start();
    let mut a = TestAgent::new("noplat");
    // An index whose only entry has no platform.
    let layout = a.dir.path().join("noplat");
    oci::write_layout(
        &layout,
        "single",
        &[oci::LayerBuilder::new().add_file("x", b"x", 0o644).finish()],
        json!({"Cmd": ["/x"]}),
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut entry = index["manifests"][0].clone();
    entry.as_object_mut().unwrap().remove("annotations");
    let list = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]});
    let desc = oci::write_blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
    oci::add_to_index(&layout, "latest", desc).unwrap();
    reg.push(&layout, "latest", "noplat", true);
    a.append_config(&format!(
        "[[images.registries]]\nhost = \"{}\"\ninsecure = true\n",
        reg.host()
    ));
    a.start();
    a.write_manifest(
        "np.yaml",
        &workload("np", &format!("{}/noplat:latest", reg.host())),
    );
    a.write_manifest(
        "gone.yaml",
        &workload("gone", &format!("{}/nothing:here", reg.host())),
    );
    let ps = a.wait_all_in_phase(2, "Error", T);
    let err = |n: &str| last_error(&ps, n);
    assert!(err("np").contains("platform"), "{}", err("np"));
    assert!(err("gone").contains("nothing"), "{}", err("gone"));
}

#[test]
fn the_hub_serves_imported_images_to_its_devices() {
    if !require_root("the_hub_serves_imported_images_to_its_devices") {
        return;
    }
    let mut hub = TestHub::new();
    hub.start();
    let layout = hub.dir.path().join("busybox");
    oci::busybox_layout(&layout, "1.0").unwrap();
    let (code, out, err) = hub.cli(&["image", "import", &layout.display().to_string()]);
    assert_eq!(code, 0, "image import: {err}");
    assert!(out.contains("busybox"), "{out}");
    let (code, ls, _) = hub.cli(&["image", "ls"]);
    assert!(
        code == 0 && ls.contains("busybox") && ls.contains("1.0"),
        "{ls}"
    );

    let mut a = TestAgent::new("hubimg");
    a.connect_to_hub(&hub.device_add("hubimg", &["role=img"]));
    a.start();
    let dep = "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: fromhub}\nspec:\n  selector: {matchLabels: {role: img}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n      containers:\n        - name: main\n          image: hub:busybox:1.0\n          command: [/bin/sh, -c, \"echo from the hub; while true; do sleep 1; done\"]\n";
    let t0 = Instant::now();
    assert_eq!(hub.apply("fromhub.yaml", dep).0, 0);
    wait_for("the hub's image running on the device", T, || {
        running(&a, "fromhub")
    });
    eprintln!("apply + pull from hub + start: {:?}", t0.elapsed());
}

#[test]
fn a_blob_whose_digest_does_not_match_is_refused_and_nothing_half_written_stays() {
    if !require_root("a_blob_whose_digest_does_not_match_is_refused_and_nothing_half_written_stays")
    {
        return;
    }
    let reg = Registry::start();
    let mut a = TestAgent::new("badblob");
    let bb = a.dir.path().join("busybox");
    oci::busybox_layout(&bb, "latest").unwrap();
    reg.push(&bb, "latest", "corrupt", false);
    // Corrupt the layer (the biggest blob) inside the registry's own storage: it is served
    // under its original digest, as a broken disk or a tampering mirror would.
    let blobs = reg.data_dir().join("docker/registry/v2/blobs/sha256");
    let mut files: Vec<_> = walk(&blobs)
        .into_iter()
        .filter(|p| p.ends_with("data"))
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let layer = files.last().expect("a layer blob in the registry");
    let mut bytes = std::fs::read(layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(layer, bytes).unwrap();

    a.append_config(&format!(
        "[[images.registries]]\nhost = \"{}\"\ninsecure = true\n",
        reg.host()
    ));
    a.start();
    a.write_manifest(
        "bad.yaml",
        &workload("bad", &format!("{}/corrupt:latest", reg.host())),
    );
    let ps = a.wait_ps("the pull refused", T, |p| {
        p["workloads"][0]["phase"] == "Error"
    });
    let err = ps["workloads"][0]["last_error"].to_string();
    eprintln!("refused with: {err}");
    assert!(
        err.contains("expected sha256:") && err.contains("found sha256:"),
        "{err}"
    );
    let leftovers: Vec<_> = walk(&a.state.join("images"))
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains(".partial") || p.to_string_lossy().contains(".tmp-")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written files left: {leftovers:?}"
    );
    assert!(!a.state.join("containers/bad.main").exists());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_image_budget_removes_unused_images_and_never_one_in_use() {
    if !require_root("the_image_budget_removes_unused_images_and_never_one_in_use") {
        return;
    }
    let mut a = TestAgent::new("budget");
    let one = a.dir.path().join("one");
    oci::busybox_layout(&one, "latest").unwrap();
    // The same busybox layer plus a layer of its own: a different image sharing a layer.
    let two = a.dir.path().join("two");
    let marker = oci::LayerBuilder::new()
        .add_file("etc/marker", b"two", 0o644)
        .finish();
    oci::write_layout(
        &two,
        "latest",
        &[busybox_tar(&one), marker],
        json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
    )
    .unwrap();
    // A budget far below one image: everything unused must go, everything in use stays.
    a.append_config("[images]\nmax_bytes = \"1Ki\"\n");
    a.start();
    a.write_manifest(
        "keep.yaml",
        &workload("keep", &format!("oci:{}:latest", one.display())),
    );
    a.write_manifest(
        "drop.yaml",
        &workload("drop", &format!("oci:{}:latest", two.display())),
    );
    let keep = wait_for("keep running", T, || running(&a, "keep"));
    wait_for("drop running", T, || running(&a, "drop"));
    let records = || walk(&a.state.join("images/manifests")).len();
    assert_eq!(
        records(),
        2,
        "two images in the store, both in use: none removed despite the budget"
    );

    a.remove_manifest("drop.yaml");
    wait_for("the unused image to be removed", T, || {
        (records() == 1).then_some(())
    });
    assert_eq!(
        running(&a, "keep"),
        Some(keep),
        "the image in use stays and its workload keeps running"
    );
    let layer_dirs = std::fs::read_dir(a.state.join("images/layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        layer_dirs, 1,
        "the marker layer goes, the busybox layer the running workload uses stays"
    );
}
