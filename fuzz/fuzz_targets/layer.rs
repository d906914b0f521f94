//! One image layer through the agent's extraction (`layer::ensure`: decompression, the
//! unpack limits, the tar entries, whiteouts, links, the move into the store). Byte 0
//! picks the media type (tar, tar+gzip, tar+zstd) and the limits; the rest is the blob.
//! The store is a folder of a private jail (tmpfs when `DROVER_FUZZ_TMP` is one) that also
//! holds a lower layer (a file, a folder, a symlink to `/etc`), a sentinel file and the
//! blob. After each run: nothing but the store changed in the jail, the lower layer and
//! the sentinel are as they were, a failed extraction left nothing in the store, and a
//! successful one left only its own folder. Then the store is emptied.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use drover_agent::image::UnpackLimits;
use drover_agent::image::fuzzing::extract_layer;
use libfuzzer_sys::fuzz_target;

const MEDIA: [&str; 3] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

struct Jail {
    root: PathBuf,
    layers: PathBuf,
    blob: PathBuf,
    lower: PathBuf,
    /// Every path of the jail outside the store, with what it must stay.
    before: BTreeMap<PathBuf, (u32, u64, i64, Vec<u8>)>,
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("fuzz setup: {e}"))
}

/// Every path under `dir` except `skip`, with its mode, size and (files) content; no
/// symlink is followed.
fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, (u32, u64, i64, Vec<u8>)>) {
    for entry in ok(fs::read_dir(dir)) {
        let path = ok(entry).path();
        if path == skip {
            continue;
        }
        let m = ok(fs::symlink_metadata(&path));
        let content = if m.is_file() {
            ok(fs::read(&path))
        } else if m.file_type().is_symlink() {
            ok(fs::read_link(&path))
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        out.insert(path.clone(), (m.mode(), m.len(), m.mtime(), content));
        if m.is_dir() {
            snapshot(&path, skip, out);
        }
    }
}

/// `DROVER_FUZZ_VERBOSE=1`: print each extraction's result (to check what seeds reach).
fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("DROVER_FUZZ_VERBOSE").is_some())
}

fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(|| {
        let base =
            std::env::var_os("DROVER_FUZZ_TMP").map_or_else(std::env::temp_dir, PathBuf::from);
        let root = base.join(format!("drover-fuzz-layer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let work = root.join("a").join("b");
        let (layers, lower) = (work.join("layers"), work.join("lower"));
        ok(fs::create_dir_all(&layers));
        ok(fs::create_dir_all(lower.join("etc")));
        ok(fs::write(
            lower.join("etc").join("passwd"),
            b"root:x:0:0::/root:/bin/sh\n",
        ));
        ok(fs::create_dir(lower.join("dir")));
        ok(symlink("/etc", lower.join("link")));
        ok(fs::write(root.join("sentinel"), b"outside the store"));
        let blob = work.join("blob");
        ok(fs::write(&blob, b""));
        let mut before = BTreeMap::new();
        snapshot(&root, &layers, &mut before);
        before.remove(&blob);
        Jail {
            root,
            layers,
            blob,
            lower,
            before,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, blob)) = data.split_first() else {
        return;
    };
    let j = jail();
    ok(fs::write(&j.blob, blob));
    let limits = UnpackLimits {
        layer_bytes: [64 << 10, 1 << 20][usize::from(sel >> 2) & 1],
        image_bytes: 1 << 20,
        layer_entries: [16, 512][usize::from(sel >> 3) & 1],
    };
    let media = MEDIA[usize::from(sel & 3) % MEDIA.len()];
    let result = extract_layer(
        &j.layers,
        &j.blob,
        media,
        std::slice::from_ref(&j.lower),
        limits,
    );
    if verbose() {
        eprintln!("{media}: {result:?}");
    }
    let mut after = BTreeMap::new();
    snapshot(&j.root, &j.layers, &mut after);
    after.remove(&j.blob);
    if after != j.before {
        let new: Vec<_> = after
            .keys()
            .filter(|p| !j.before.contains_key(*p))
            .collect();
        panic!("extraction changed the jail outside the store (new: {new:?}): {result:?}");
    }
    let left: Vec<PathBuf> = ok(fs::read_dir(&j.layers)).map(|e| ok(e).path()).collect();
    match &result {
        Ok(dir) => assert_eq!(left, [dir.clone()], "store after success"),
        Err(e) => assert!(left.is_empty(), "left behind after `{e}`: {left:?}"),
    }
    for p in left {
        ok(fs::remove_dir_all(p));
    }
});
