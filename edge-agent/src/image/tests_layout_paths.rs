//! An `oci:` layout is read inside its folder, never through the host's view: a file of
//! the layout that is a FIFO neither hangs the caller (the agent resolves layouts on its
//! own loop) nor is read; a symlink never leads out of the layout; symlinks inside it
//! still work.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use super::tests::{Fixture, reference};
use super::testutil::{self, LayerBuilder};
use super::{ImageError, PreparedImage};

fn layer() -> Vec<u8> {
    LayerBuilder::new()
        .add_dir("etc", 0o755)
        .add_file("etc/motd", b"hello", 0o644)
        .finish()
}

/// The path of the layer blob `layer()` in `layout`.
fn layer_blob(layout: &Path) -> PathBuf {
    let gz = testutil::gzip(&layer()).unwrap();
    let hex = testutil::sha256_digest(&gz);
    layout
        .join("blobs/sha256")
        .join(hex.trim_start_matches("sha256:"))
}

fn make_fifo(path: &Path) {
    let _ = fs::remove_file(path);
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    nix::unistd::mkfifo(path, mode).unwrap();
}

/// Runs `prepare` (or `prepare_local`) on another thread: a read that blocks on a FIFO
/// shows as a timeout instead of hanging the test run.
fn prepare_within(
    fx: Fixture,
    r: String,
    local: bool,
) -> Option<Result<PreparedImage, ImageError>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let res = if local {
            fx.store.prepare_local(&r)
        } else {
            Some(fx.store.prepare(&r))
        };
        let _ = tx.send(res);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("reading the layout blocked (a FIFO was opened)")
}

#[test]
fn fifos_in_a_layout_block_nothing() {
    for file in ["oci-layout", "index.json"] {
        let fx = Fixture::new();
        let layout = fx.layout("app");
        testutil::write_layout(&layout, "v1", &[layer()], json!({})).unwrap();
        make_fifo(&layout.join(file));
        let r = reference(&layout, "v1");
        let err = prepare_within(fx, r, true).unwrap().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a regular file"), "{file}: {msg}");
    }
    // A layer blob that is a FIFO (the extraction runs on a pull thread, which must end).
    let fx = Fixture::new();
    let layout = fx.layout("app");
    testutil::write_layout(&layout, "v1", &[layer()], json!({})).unwrap();
    make_fifo(&layer_blob(&layout));
    let r = reference(&layout, "v1");
    let err = prepare_within(fx, r, false).unwrap().unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn symlinks_in_a_layout_never_leave_it() {
    // The same, valid blob outside the layout: followed on the host, it would be read.
    let fx = Fixture::new();
    let layout = fx.layout("app");
    testutil::write_layout(&layout, "v1", &[layer()], json!({})).unwrap();
    let blob = layer_blob(&layout);
    let outside = fx.dir.path().join("outside-blob");
    fs::rename(&blob, &outside).unwrap();
    symlink(&outside, &blob).unwrap();
    let err = fx.store.prepare(&reference(&layout, "v1")).unwrap_err();
    assert!(
        err.to_string().contains("cannot read blob"),
        "an absolute symlink resolves inside the layout: {err}"
    );
    assert!(fx.layer_entries().is_empty(), "{:?}", fx.layer_entries());
    // A relative one that climbs above the layout stops at its root.
    let up = Path::new("../../..").join(outside.file_name().unwrap());
    fs::remove_file(&blob).unwrap();
    symlink(&up, &blob).unwrap();
    assert!(fx.store.prepare(&reference(&layout, "v1")).is_err());
    // index.json too: the host's copy is never read.
    let index = layout.join("index.json");
    let host_index = fx.dir.path().join("host-index.json");
    fs::rename(&index, &host_index).unwrap();
    symlink(&host_index, &index).unwrap();
    let err = fx.store.prepare(&reference(&layout, "v1")).unwrap_err();
    assert!(err.to_string().contains("index.json"), "{err}");
}

#[test]
fn symlinks_inside_a_layout_still_work() {
    let fx = Fixture::new();
    let layout = fx.layout("app");
    testutil::write_layout(&layout, "v1", &[layer()], json!({})).unwrap();
    let blob = layer_blob(&layout);
    let kept = layout.join("kept");
    fs::create_dir(&kept).unwrap();
    fs::rename(&blob, kept.join("layer")).unwrap();
    symlink("../../kept/layer", &blob).unwrap();
    let index = layout.join("index.json");
    fs::rename(&index, kept.join("index.json")).unwrap();
    symlink("/kept/index.json", &index).unwrap();
    let img = fx.store.prepare(&reference(&layout, "v1")).unwrap();
    assert_eq!(fs::read(img.layers[0].join("etc/motd")).unwrap(), b"hello");
}
