//! Pulls from a real registry: Debian's `docker-registry` (distribution 2.x) started on a
//! free port, images pushed to it with `skopeo copy`. Needs `docker-registry`, `skopeo`
//! and `busybox-static`; run as root (layer extraction keeps owners).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use drover_agent::image::{ImageError, ImageStore, Progress, PullConfig};
use serde_json::json;

use drover_tests::oci;
use drover_tests::registry::Registry;

fn marker_image(arch: &str, variant: Option<&str>) -> oci::PlatformImage {
    let name = format!("built-for-{arch}{}", variant.unwrap_or(""));
    oci::PlatformImage {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
        layers: vec![
            oci::LayerBuilder::new()
                .add_file(&name, b"x", 0o644)
                .finish(),
        ],
        config: json!({ "Cmd": ["/bin/sh"] }),
    }
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(&dir.join("images")).unwrap()
}

#[test]
fn pulls_busybox_from_a_real_registry_and_runs_it() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("busybox");
    oci::busybox_layout(&layout, "latest").unwrap();
    reg.push(&layout, "latest", "busybox", false);

    let store = store(tmp.path());
    let reference = format!("{}/busybox:latest", reg.host());
    let seen = Mutex::new(Vec::<Progress>::new());
    let img = store
        .prepare_with(&reference, &PullConfig::default(), &|p| {
            seen.lock().unwrap().push(p)
        })
        .unwrap();
    assert_eq!(img.config.cmd, ["/bin/sh"]);
    let busybox: PathBuf = img.layers[0].join("bin/busybox");
    let out = Command::new(&busybox)
        .args(["echo", "pulled"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pulled");
    let last = *seen.lock().unwrap().last().unwrap();
    assert!(
        last.total_bytes > 500_000 && last.done_bytes == last.total_bytes,
        "{last:?}"
    );

    // Pinned by digest: same image, verified against the digest.
    let pinned = format!("{}/busybox@{}", reg.host(), img.manifest_digest);
    let again = store
        .prepare_with(&pinned, &PullConfig::default(), &|_| {})
        .unwrap();
    assert_eq!(again.layers, img.layers);
    // Into a fresh store too (network path, not the local shortcut).
    let fresh = tempfile::tempdir().unwrap();
    let other = store_prepare(&self::store(fresh.path()), &pinned);
    assert_eq!(other.manifest_digest, img.manifest_digest);
}

fn store_prepare(store: &ImageStore, reference: &str) -> drover_agent::image::PreparedImage {
    store
        .prepare_with(reference, &PullConfig::default(), &|_| {})
        .unwrap()
}

#[test]
fn multi_platform_index_picks_this_host() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("multi");
    let host = oci::host_arch();
    let mut images = vec![marker_image(host, None)];
    for (arch, variant) in [
        ("arm64", Some("v8")),
        ("arm", Some("v7")),
        ("arm", Some("v6")),
        ("amd64", None),
    ] {
        if arch != host {
            images.push(marker_image(arch, variant));
        }
    }
    images.reverse(); // the host's entry is not simply the first one
    oci::write_multiplatform_layout(&layout, "latest", &images).unwrap();
    reg.push(&layout, "latest", "multi", true);

    let img = store_prepare(&store(tmp.path()), &format!("{}/multi:latest", reg.host()));
    assert_eq!(img.layers.len(), 1);
    assert!(
        img.layers[0].join(format!("built-for-{host}")).is_file(),
        "picked the wrong platform: {:?}",
        std::fs::read_dir(&img.layers[0])
            .unwrap()
            .collect::<Vec<_>>()
    );
}

#[test]
fn platformless_index_fails_clearly() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("noplat");
    let image = marker_image(oci::host_arch(), None);
    oci::write_layout(&layout, "single", &image.layers, image.config.clone()).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut entry = index["manifests"][0].clone();
    entry.as_object_mut().unwrap().remove("annotations");
    let list = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry],
    });
    let desc = oci::write_blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
    oci::add_to_index(&layout, "latest", desc).unwrap();
    reg.push(&layout, "latest", "noplat", true);

    let err = store(tmp.path())
        .prepare_with(
            &format!("{}/noplat:latest", reg.host()),
            &PullConfig::default(),
            &|_| {},
        )
        .unwrap_err();
    assert!(matches!(err, ImageError::PlatformlessIndex { .. }), "{err}");
    assert!(err.to_string().contains("without a `platform`"), "{err}");
}
