//! Store-level tests: real OCI layouts (built with the end-to-end tests' builder)
//! prepared into a temporary store. Run as root (whiteouts need mknod, xattrs `trusted.*`).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::testutil::{self, LayerBuilder, PlatformImage};
use super::{ImageConfig, ImageError, ImageStore};

pub(super) struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("images")).unwrap();
        Self { dir, store }
    }

    pub fn layout(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Names in `layers/sha256/` (extracted layers and any temporary folder).
    pub fn layer_entries(&self) -> Vec<String> {
        let dir = self.dir.path().join("images/layers/sha256");
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

pub(super) fn reference(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer of the given length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn base_layer() -> Vec<u8> {
    LayerBuilder::new()
        .add_dir("./etc", 0o755)
        .add_file("./etc/motd", b"hello", 0o644)
        .add_dir("bin", 0o755)
        .add_owned_file("bin/tool", b"#!/bin/sh\n", 0o4755, 1000, 1001)
        .add_hardlink("bin/tool2", "bin/tool")
        .add_symlink("bin/sh", "/bin/busybox")
        .add_symlink("etc/tool", "../bin/tool")
        .add_fifo("etc/fifo", 0o600)
        .add_dir("var/cache", 0o750)
        .add_file("var/cache/old", b"old", 0o600)
        .finish()
}

fn top_layer() -> Vec<u8> {
    LayerBuilder::new()
        .add_whiteout("etc/motd")
        .add_opaque("var/cache")
        .add_file("var/cache/new", b"n", 0o640)
        .finish()
}

#[test]
fn prepares_two_layers_with_whiteouts_links_and_modes() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    let config = json!({"Entrypoint": ["/bin/tool"], "Cmd": ["-v"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "1000",
        "Healthcheck": {"Test": ["CMD-SHELL", "test -e /ok"], "Interval": 2_000_000_000u64}});
    let digest =
        testutil::write_layout(&layout, "v1", &[base_layer(), top_layer()], config).unwrap();
    let img = fx.store.prepare(&reference(&layout, "v1")).unwrap();
    assert_eq!(img.manifest_digest, digest);
    let want = ImageConfig {
        entrypoint: vec!["/bin/tool".into()],
        cmd: vec!["-v".into()],
        env: vec!["A=1".into()],
        working_dir: Some("/srv".into()),
        user: Some("1000".into()),
        healthcheck: Some(Box::new(super::healthcheck::ImageHealthcheck {
            test: Some(vec!["CMD-SHELL".into(), "test -e /ok".into()]),
            interval: Some(2_000_000_000),
            ..Default::default()
        })),
    };
    assert_eq!(img.config, want);
    let [base, top] = &img.layers[..] else {
        panic!("expected 2 layers: {:?}", img.layers)
    };
    assert!(base.ends_with(testutil::sha256_digest(&base_layer()).trim_start_matches("sha256:")));
    assert_eq!(fs::read(base.join("etc/motd")).unwrap(), b"hello");
    let tool = fs::metadata(base.join("bin/tool")).unwrap();
    assert_eq!(
        (tool.mode() & 0o7777, tool.uid(), tool.gid()),
        (0o4755, 1000, 1001)
    );
    assert_eq!(tool.mtime(), 1_700_000_000);
    assert_eq!(
        fs::metadata(base.join("bin/tool2")).unwrap().ino(),
        tool.ino()
    );
    assert_eq!(
        fs::read_link(base.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(base.join("etc/tool")).unwrap(),
        Path::new("../bin/tool")
    );
    assert!(
        fs::symlink_metadata(base.join("etc/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::metadata(base.join("var/cache")).unwrap().mode() & 0o7777,
        0o750
    );
    let wh = fs::symlink_metadata(top.join("etc/motd")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout must be a 0:0 char device"
    );
    assert!(!top.join("etc/.wh.motd").exists());
    assert_eq!(
        xattr(&top.join("var/cache"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(fs::read(top.join("var/cache/new")).unwrap(), b"n");
    let record = fx
        .dir
        .path()
        .join("images/manifests")
        .join(format!("{}.json", digest.trim_start_matches("sha256:")));
    assert!(record.is_file(), "manifest record written");
}

#[test]
fn layers_are_shared_and_not_extracted_twice() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    let app1 = LayerBuilder::new().add_file("app1", b"1", 0o755).finish();
    let app2 = LayerBuilder::new().add_file("app2", b"2", 0o755).finish();
    testutil::write_layout(&layout, "one", &[base_layer(), app1], json!({})).unwrap();
    testutil::write_layout(&layout, "two", &[base_layer(), app2], json!({})).unwrap();
    let one = fx.store.prepare(&reference(&layout, "one")).unwrap();
    fs::write(one.layers[0].join("marker"), b"still here").unwrap();
    let two = fx.store.prepare(&reference(&layout, "two")).unwrap();
    assert_eq!(one.layers[0], two.layers[0]);
    assert!(
        two.layers[0].join("marker").exists(),
        "shared base layer was extracted again"
    );
    let again = fx.store.prepare(&reference(&layout, "one")).unwrap();
    assert_eq!(again.layers, one.layers);
    assert_eq!(fx.layer_entries().len(), 3);
}

/// The start path's shortcut: a layout is resolved in place only when nothing has to be
/// extracted; registry references and layouts with a missing layer go to a pull.
#[test]
fn prepare_local_only_when_every_layer_is_extracted() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    let app = LayerBuilder::new().add_file("app", b"1", 0o755).finish();
    testutil::write_layout(&layout, "v1", &[base_layer(), app], json!({})).unwrap();
    let r = reference(&layout, "v1");
    assert!(
        fx.store.prepare_local(&r).is_none(),
        "layers not extracted yet"
    );
    assert!(
        fx.layer_entries().is_empty(),
        "prepare_local never extracts"
    );
    let pulled = fx.store.prepare(&r).unwrap();
    let local = fx.store.prepare_local(&r).unwrap().unwrap();
    assert_eq!(local.layers, pulled.layers);
    assert_eq!(local.manifest_digest, pulled.manifest_digest);
    assert_eq!(fx.store.resolved(&r).unwrap().layers, pulled.layers);
    assert!(fx.store.prepare_local("registry.example/app:v1").is_none());
    let missing_tag = fx.store.prepare_local(&reference(&layout, "v2"));
    assert!(matches!(
        missing_tag,
        Some(Err(ImageError::TagNotFound { .. }))
    ));
}

#[test]
fn corrupted_blob_is_refused_and_nothing_remains() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    let layer = base_layer();
    testutil::write_layout(&layout, "latest", std::slice::from_ref(&layer), json!({})).unwrap();
    let gz = testutil::gzip(&layer).unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(testutil::sha256_digest(&gz).trim_start_matches("sha256:"));
    fs::write(&blob, testutil::gzip(&top_layer()).unwrap()).unwrap();
    let err = fx
        .store
        .prepare(&format!("oci:{}", layout.display()))
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&testutil::sha256_digest(&gz)),
        "{err}"
    );
    assert!(
        fx.layer_entries().is_empty(),
        "left behind: {:?}",
        fx.layer_entries()
    );
}

/// A layout whose manifest is written by hand (wrong diff_id, other media types).
fn custom_layout(layout: &Path, media_type: &str, blob: &[u8], diff_id: &str) {
    testutil::init_layout(layout).unwrap();
    let layer = testutil::write_blob(layout, media_type, blob).unwrap();
    let config = json!({"architecture": testutil::host_arch(), "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    let config = testutil::write_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({"schemaVersion": 2, "config": config.unwrap(), "layers": [layer]});
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let desc = testutil::write_blob(layout, mt, &serde_json::to_vec(&manifest).unwrap()).unwrap();
    testutil::add_to_index(layout, "latest", desc).unwrap();
}

#[test]
fn wrong_diff_id_is_refused() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    let tar = base_layer();
    custom_layout(
        &layout,
        "application/vnd.oci.image.layer.v1.tar",
        &tar,
        &testutil::sha256_digest(b"other"),
    );
    let err = fx.store.prepare(&reference(&layout, "latest")).unwrap_err();
    assert!(err.to_string().contains("diff_id"), "{err}");
    assert!(fx.layer_entries().is_empty());
}

#[test]
fn uncompressed_docker_and_zstd_media_types_work() {
    let fx = Fixture::new();
    let tar = base_layer();
    let plain = fx.layout("plain");
    custom_layout(
        &plain,
        "application/vnd.oci.image.layer.v1.tar",
        &tar,
        &testutil::sha256_digest(&tar),
    );
    assert_eq!(
        fx.store
            .prepare(&reference(&plain, "latest"))
            .unwrap()
            .layers
            .len(),
        1
    );
    let docker = fx.layout("docker");
    let gz = testutil::gzip(&tar).unwrap();
    custom_layout(
        &docker,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        &gz,
        &testutil::sha256_digest(&tar),
    );
    assert!(fx.store.prepare(&reference(&docker, "latest")).is_ok());
    let zstd = fx.layout("zstd");
    let top = top_layer();
    let compressed =
        ruzstd::encoding::compress_to_vec(&top[..], ruzstd::encoding::CompressionLevel::Fastest);
    custom_layout(
        &zstd,
        "application/vnd.oci.image.layer.v1.tar+zstd",
        &compressed,
        &testutil::sha256_digest(&top),
    );
    assert!(fx.store.prepare(&reference(&zstd, "latest")).is_ok());
    let bad = fx.layout("badzstd");
    custom_layout(
        &bad,
        "application/vnd.oci.image.layer.v1.tar+zstd",
        b"not zstd at all",
        &testutil::sha256_digest(b"y"),
    );
    let err = fx.store.prepare(&reference(&bad, "latest")).unwrap_err();
    assert!(err.to_string().contains("zstd"), "{err}");
    let odd = fx.layout("odd");
    custom_layout(
        &odd,
        "application/x-rar",
        b"x",
        &testutil::sha256_digest(b"y"),
    );
    let err = fx.store.prepare(&reference(&odd, "latest")).unwrap_err();
    assert!(
        matches!(err, ImageError::UnsupportedMediaType { .. }),
        "{err}"
    );
    assert!(!fx.layer_entries().iter().any(|e| e.starts_with(".tmp")));
}

#[test]
fn tags_default_and_digest_references() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    let d1 =
        testutil::write_layout(&layout, "v1", &[base_layer()], json!({"Cmd": ["one"]})).unwrap();
    // A single untagged-as-latest manifest is the default.
    assert_eq!(
        fx.store
            .prepare(&format!("oci:{}", layout.display()))
            .unwrap()
            .manifest_digest,
        d1
    );
    let d2 =
        testutil::write_layout(&layout, "v2", &[top_layer()], json!({"Cmd": ["two"]})).unwrap();
    let err = fx
        .store
        .prepare(&format!("oci:{}", layout.display()))
        .unwrap_err();
    assert!(
        err.to_string().contains("`latest`") && err.to_string().contains("v1, v2"),
        "{err}"
    );
    let err = fx.store.prepare(&reference(&layout, "v3")).unwrap_err();
    assert!(
        matches!(err, ImageError::TagNotFound { .. }) && err.to_string().contains("v1, v2"),
        "{err}"
    );
    assert_eq!(
        fx.store
            .prepare(&reference(&layout, "v2"))
            .unwrap()
            .config
            .cmd,
        vec!["two"]
    );
    let by_digest = fx
        .store
        .prepare(&format!("oci:{}@{d1}", layout.display()))
        .unwrap();
    assert_eq!(
        (by_digest.manifest_digest, by_digest.config.cmd),
        (d1, vec!["one".to_string()])
    );
    assert_ne!(d2, "");
    let err = fx
        .store
        .prepare(&reference(&fx.layout("missing"), "v1"))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::Layout { .. }) && err.to_string().contains("oci-layout"),
        "{err}"
    );
}

fn platform_image(arch: &str, variant: Option<&str>, cmd: &str) -> PlatformImage {
    PlatformImage {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
        layers: vec![
            LayerBuilder::new()
                .add_file(cmd, cmd.as_bytes(), 0o644)
                .finish(),
        ],
        config: json!({"Cmd": [cmd]}),
    }
}

#[test]
fn multi_platform_index_picks_this_host() {
    let fx = Fixture::new();
    let layout = fx.layout("multi");
    let host = testutil::host_arch();
    let other = if host == "s390x" { "riscv64" } else { "s390x" };
    let images = [
        platform_image(other, None, "other"),
        platform_image(host, None, "host"),
        platform_image("arm", Some("v5"), "arm"),
    ];
    testutil::write_multiplatform_layout(&layout, "latest", &images).unwrap();
    let img = fx.store.prepare(&reference(&layout, "latest")).unwrap();
    assert_eq!(img.config.cmd, vec!["host"]);
    let only_other = fx.layout("other");
    testutil::write_multiplatform_layout(
        &only_other,
        "latest",
        &[
            platform_image(other, None, "x"),
            platform_image("mips", Some("v9"), "y"),
        ],
    )
    .unwrap();
    let err = fx
        .store
        .prepare(&reference(&only_other, "latest"))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("linux/{other}, linux/mips/v9")),
        "{err}"
    );
}

#[test]
fn stale_temp_folders_are_removed_on_open() {
    let fx = Fixture::new();
    let stale = fx
        .dir
        .path()
        .join("images/layers/sha256/.tmp-abc-999999999-1-0");
    fs::create_dir_all(stale.join("x")).unwrap();
    ImageStore::open(&fx.dir.path().join("images")).unwrap();
    assert!(!stale.exists());
}

#[test]
fn busybox_layout_prepares() {
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox missing: apt-get install busybox-static"
    );
    let fx = Fixture::new();
    let layout = fx.layout("busybox");
    testutil::busybox_layout(&layout, "latest").unwrap();
    let img = fx
        .store
        .prepare(&format!("oci:{}", layout.display()))
        .unwrap();
    assert_eq!(img.config.cmd, vec!["/bin/sh"]);
    let root = &img.layers[0];
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn a_hard_link_to_a_file_of_a_lower_layer_resolves_there() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new();
    let layout = fx.layout("saved");
    // What `docker save` writes: the upper layer links to a file only the base has.
    let upper = LayerBuilder::new()
        .add_dir("srv", 0o755)
        .add_hardlink("srv/tool", "bin/tool")
        .add_hardlink("srv/motd", "etc/motd")
        .finish();
    testutil::write_layout(&layout, "v1", &[base_layer(), upper], json!({})).unwrap();
    let img = fx.store.prepare(&reference(&layout, "v1")).unwrap();
    let [base, top] = &img.layers[..] else {
        panic!("expected 2 layers: {:?}", img.layers)
    };
    let linked = fs::metadata(top.join("srv/tool")).unwrap();
    assert_eq!(
        linked.ino(),
        fs::metadata(base.join("bin/tool")).unwrap().ino()
    );
    assert_eq!(fs::read(top.join("srv/motd")).unwrap(), b"hello");

    // A file the layer in between deleted (whiteout) is gone: the link is refused.
    let fx = Fixture::new();
    let layout = fx.layout("deleted");
    let middle = LayerBuilder::new().add_whiteout("etc/motd").finish();
    let upper = LayerBuilder::new()
        .add_hardlink("motd-again", "etc/motd")
        .finish();
    testutil::write_layout(&layout, "v1", &[base_layer(), middle, upper], json!({})).unwrap();
    let err = fx.store.prepare(&reference(&layout, "v1")).unwrap_err();
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");

    // Reached through a symlinked folder of the lower layer: refused too.
    let fx = Fixture::new();
    let layout = fx.layout("through");
    let base = LayerBuilder::new()
        .add_dir("real", 0o755)
        .add_file("real/f", b"f", 0o644)
        .add_symlink("alias", "real")
        .finish();
    let upper = LayerBuilder::new().add_hardlink("g", "alias/f").finish();
    testutil::write_layout(&layout, "v1", &[base, upper], json!({})).unwrap();
    let err = fx.store.prepare(&reference(&layout, "v1")).unwrap_err();
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
}

#[test]
fn min_free_disk_applies_to_oci_layouts_too() {
    let fx = Fixture::new();
    let layout = fx.layout("big");
    testutil::write_layout(&layout, "v1", &[base_layer()], json!({})).unwrap();
    let cfg = super::PullConfig {
        min_free_disk: u64::MAX / 2,
        ..super::PullConfig::default()
    };
    let err = fx
        .store
        .prepare_with(&reference(&layout, "v1"), &cfg, &|_| {})
        .unwrap_err();
    assert!(matches!(err, ImageError::LowDisk { .. }), "{err}");
    assert!(fx.layer_entries().is_empty(), "nothing extracted");
    // With room, it extracts; once extracted, the floor no longer matters (no new bytes).
    fx.store.prepare(&reference(&layout, "v1")).unwrap();
    fx.store
        .prepare_with(&reference(&layout, "v1"), &cfg, &|_| {})
        .unwrap();
}
