//! Malicious layers: each must be refused as a whole, naming the layer digest and the
//! entry, with nothing left in the store and nothing written outside it.

use std::fs;

use serde_json::json;
use tar::EntryType;

use super::ImageError;
use super::tests::{Fixture, reference};
use super::testutil::{self, LayerBuilder};

/// Prepares an image whose only layer is `good files + tar`; expects `entry` refused.
fn refused(fx: &Fixture, tar: Vec<u8>, entry: &str) -> String {
    let layout = fx.layout("evil");
    let layer_digest = testutil::sha256_digest(&testutil::gzip(&tar).unwrap());
    testutil::write_layout(&layout, "latest", &[tar], json!({})).unwrap();
    let err = fx.store.prepare(&reference(&layout, "latest")).unwrap_err();
    match &err {
        ImageError::UnsafeEntry {
            layer, entry: e, ..
        } => {
            assert_eq!(layer, &layer_digest);
            assert_eq!(e, entry);
        }
        other => panic!("expected UnsafeEntry for `{entry}`, got: {other}"),
    }
    assert!(
        fx.layer_entries().is_empty(),
        "left behind: {:?}",
        fx.layer_entries()
    );
    err.to_string()
}

fn with_good_files() -> LayerBuilder {
    LayerBuilder::new()
        .add_dir("etc", 0o755)
        .add_file("etc/ok", b"ok", 0o644)
}

fn raw(b: LayerBuilder, path: &str, kind: EntryType, link: Option<&str>) -> Vec<u8> {
    b.add_raw_entry(
        path.as_bytes(),
        kind,
        link.map(str::as_bytes),
        b"data",
        0o644,
    )
    .finish()
}

#[test]
fn absolute_entry_path() {
    let fx = Fixture::new();
    let msg = refused(
        &fx,
        raw(with_good_files(), "/etc/evil", EntryType::Regular, None),
        "/etc/evil",
    );
    assert!(msg.contains("absolute"), "{msg}");
}

#[test]
fn parent_components_in_entry_path() {
    let fx = Fixture::new();
    let msg = refused(
        &fx,
        raw(
            with_good_files(),
            "etc/../../evil",
            EntryType::Regular,
            None,
        ),
        "etc/../../evil",
    );
    assert!(msg.contains("`..`"), "{msg}");
    let fx = Fixture::new();
    refused(
        &fx,
        raw(with_good_files(), "../evil", EntryType::Directory, None),
        "../evil",
    );
}

#[test]
fn hard_link_targets_outside_the_layer() {
    let fx = Fixture::new();
    let msg = refused(
        &fx,
        raw(
            with_good_files(),
            "etc/shadow",
            EntryType::Link,
            Some("/etc/shadow"),
        ),
        "etc/shadow",
    );
    assert!(msg.contains("hard link target `/etc/shadow`"), "{msg}");
    let fx = Fixture::new();
    refused(
        &fx,
        raw(
            with_good_files(),
            "etc/up",
            EntryType::Link,
            Some("../outside"),
        ),
        "etc/up",
    );
    let fx = Fixture::new();
    let msg = refused(
        &fx,
        raw(
            with_good_files(),
            "etc/later",
            EntryType::Link,
            Some("etc/missing"),
        ),
        "etc/later",
    );
    assert!(
        msg.contains("neither an earlier entry of this layer nor a file of the layers below"),
        "{msg}"
    );
}

#[test]
fn relative_symlink_climbing_out() {
    let fx = Fixture::new();
    let tar = with_good_files()
        .add_symlink("etc/x", "../../../host")
        .finish();
    let msg = refused(&fx, tar, "etc/x");
    assert!(msg.contains("climbs out"), "{msg}");
}

#[test]
fn entry_written_through_a_symlink() {
    let fx = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    let tar = with_good_files()
        .add_symlink("evil", target)
        .add_file("evil/pwned", b"x", 0o644)
        .finish();
    let msg = refused(&fx, tar, "evil/pwned");
    assert!(
        msg.contains("written through symlink `evil`") && msg.contains("outside the rootfs"),
        "{msg}"
    );
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote outside the layer"
    );
    // Even a symlink that stays inside the layer is never written through.
    let fx = Fixture::new();
    let tar = with_good_files()
        .add_symlink("lib", "etc")
        .add_dir("lib/sub", 0o755)
        .finish();
    let msg = refused(&fx, tar, "lib/sub");
    assert!(msg.contains("written through symlink `lib`"), "{msg}");
    // A hard link through a symlinked parent neither.
    let fx = Fixture::new();
    let tar = with_good_files()
        .add_symlink("l", target)
        .add_hardlink("etc/h", "l/file")
        .finish();
    refused(&fx, tar, "etc/h");
}

#[test]
fn existing_symlink_is_replaced_not_written_through() {
    let fx = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"original").unwrap();
    let tar = LayerBuilder::new()
        .add_symlink("f", victim.to_str().unwrap())
        .add_file("f", b"replaced", 0o644)
        .add_symlink("d", outside.path().to_str().unwrap())
        .add_dir("d", 0o755)
        .finish();
    let layout = fx.layout("app");
    testutil::write_layout(&layout, "latest", &[tar], json!({})).unwrap();
    let img = fx.store.prepare(&reference(&layout, "latest")).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    assert_eq!(fs::read(img.layers[0].join("f")).unwrap(), b"replaced");
    assert!(
        fs::symlink_metadata(img.layers[0].join("d"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn device_nodes_are_skipped() {
    let fx = Fixture::new();
    let tar = raw(with_good_files(), "dev-sda", EntryType::Block, None);
    let layout = fx.layout("app");
    testutil::write_layout(&layout, "latest", &[tar], json!({})).unwrap();
    let img = fx.store.prepare(&reference(&layout, "latest")).unwrap();
    assert!(fs::symlink_metadata(img.layers[0].join("dev-sda")).is_err());
    assert!(img.layers[0].join("etc/ok").is_file());
}

/// Folder times are set after the last entry: a folder that a later entry replaced by a
/// symlink to a host folder must not give that folder the layer's time (nor anything
/// else), and an existing symlink is never chmod-ed or chown-ed through.
#[test]
fn metadata_passes_never_follow_a_symlink_that_replaced_a_folder() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let before = fs::metadata(outside.path()).unwrap();
    let target = outside.path().to_str().unwrap();
    let tar = LayerBuilder::new()
        .add_dir("d", 0o777)
        .add_symlink("d", target)
        .add_dir("e", 0o755)
        .add_symlink("e", target)
        .add_dir("e", 0o700)
        .finish();
    let layout = fx.layout("app");
    testutil::write_layout(&layout, "latest", &[tar], json!({})).unwrap();
    let img = fx.store.prepare(&reference(&layout, "latest")).unwrap();
    let after = fs::metadata(outside.path()).unwrap();
    assert_eq!(
        (after.mtime(), after.mode(), after.uid()),
        (before.mtime(), before.mode(), before.uid()),
        "the host folder was touched through the link"
    );
    assert!(
        fs::symlink_metadata(img.layers[0].join("d"))
            .unwrap()
            .is_symlink()
    );
    assert!(
        fs::symlink_metadata(img.layers[0].join("e"))
            .unwrap()
            .is_dir()
    );
}
