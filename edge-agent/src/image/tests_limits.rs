//! Unpack limits at the store level: layers that expand beyond `images.max_layer_bytes`
//! (a large file, a sparse file, zeros after the tar's end), beyond the image's room, or
//! with too many entries are refused while streaming, with nothing left in the store.

use serde_json::json;

use super::tests::{Fixture, reference};
use super::testutil::{self, LayerBuilder};
use super::{ImageError, PullConfig, UnpackLimits};

fn cfg(layer_bytes: u64, image_bytes: u64, layer_entries: u64) -> PullConfig {
    PullConfig {
        limits: UnpackLimits {
            layer_bytes,
            image_bytes,
            layer_entries,
        },
        ..PullConfig::default()
    }
}

/// Prepares `layers` (uncompressed tars) as one image under `cfg`.
fn prepare(fx: &Fixture, layers: Vec<Vec<u8>>, cfg: &PullConfig) -> Result<(), ImageError> {
    let layout = fx.layout("img");
    testutil::write_layout(&layout, "v1", &layers, json!({})).unwrap();
    fx.store
        .prepare_with(&reference(&layout, "v1"), cfg, &|_| {})
        .map(drop)
}

fn assert_nothing_left(fx: &Fixture) {
    let left = fx.layer_entries();
    assert!(left.is_empty(), "left in the store: {left:?}");
}

#[test]
fn a_file_beyond_the_layer_limit_is_refused_before_it_is_written() {
    let fx = Fixture::new();
    let tar = LayerBuilder::new()
        .add_file("zeros", &vec![0u8; 256 << 10], 0o644)
        .finish();
    let digest = testutil::sha256_digest(&testutil::gzip(&tar).unwrap());
    let err = prepare(&fx, vec![tar], &cfg(64 << 10, 1 << 30, 100)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::LayerTooLarge { .. }), "{msg}");
    assert!(
        msg.contains(&format!(
            "layer {digest} expands beyond 65536 bytes (images.max_layer_bytes)"
        )),
        "{msg}"
    );
    assert_nothing_left(&fx);
}

#[test]
fn a_layer_within_its_limits_extracts() {
    let fx = Fixture::new();
    let tar = LayerBuilder::new()
        .add_file("a", &[1u8; 1000], 0o644)
        .finish();
    // The tar stream itself (headers, padding, end blocks) is what counts.
    let exact = tar.len() as u64;
    prepare(&fx, vec![tar.clone()], &cfg(exact, exact, 1)).unwrap();
    let fx = Fixture::new();
    let err = prepare(&fx, vec![tar], &cfg(exact - 1, 1 << 30, 1)).unwrap_err();
    assert!(matches!(err, ImageError::LayerTooLarge { .. }), "{err}");
    assert_nothing_left(&fx);
}

#[test]
fn zeros_after_the_end_of_the_tar_count_too() {
    // A decompression bomb need not be a file: gzip of megabytes of zeros after the
    // end-of-archive blocks is drained for the digest, and must be cut off as well.
    let fx = Fixture::new();
    let mut tar = LayerBuilder::new().add_file("a", b"a", 0o644).finish();
    tar.resize(tar.len() + (4 << 20), 0);
    let err = prepare(&fx, vec![tar], &cfg(1 << 20, 1 << 30, 100)).unwrap_err();
    assert!(matches!(err, ImageError::LayerTooLarge { .. }), "{err}");
    assert_nothing_left(&fx);
}

#[test]
fn a_sparse_file_counts_its_real_size() {
    let fx = Fixture::new();
    let real: u64 = 1 << 30;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_path("holes").unwrap();
    h.set_mode(0o644);
    h.set_size(512);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(real);
    gnu.sparse[0].set_offset(real - 512);
    gnu.sparse[0].set_length(512);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[7u8; 512][..]).unwrap();
    let tar = b.into_inner().unwrap();
    assert!(tar.len() < 4096, "the tar itself is tiny");
    let err = prepare(&fx, vec![tar], &cfg(1 << 20, 1 << 30, 100)).unwrap_err();
    assert!(matches!(err, ImageError::LayerTooLarge { .. }), "{err}");
    assert_nothing_left(&fx);
}

#[test]
fn too_many_entries_are_refused() {
    let fx = Fixture::new();
    let mut b = LayerBuilder::new();
    for i in 0..5 {
        b = b.add_file(&format!("f{i}"), b"x", 0o644);
    }
    let err = prepare(&fx, vec![b.finish()], &cfg(1 << 20, 1 << 30, 4)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("more than 4 entries (images.max_layer_entries)"),
        "{msg}"
    );
    assert_nothing_left(&fx);
}

#[test]
fn the_layers_of_one_image_share_the_image_limit() {
    let fx = Fixture::new();
    let layer = |name: &str| {
        LayerBuilder::new()
            .add_file(name, &[3u8; 8 << 10], 0o644)
            .finish()
    };
    let err = prepare(
        &fx,
        vec![layer("one"), layer("two")],
        &cfg(1 << 20, 12 << 10, 100),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::ImageTooLarge { .. }), "{msg}");
    assert!(
        msg.contains("beyond 12288 bytes at layer sha256:")
            && msg.contains("images.max_image_bytes"),
        "{msg}"
    );
    let left = fx.layer_entries();
    assert_eq!(left.len(), 1, "only the first layer stays: {left:?}");
    assert!(!left[0].starts_with(".tmp-"), "{left:?}");
}
