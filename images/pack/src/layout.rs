//! Writes a multi-platform OCI image layout (image-spec 1.1): one gzip layer per platform
//! holding a single static binary plus `/etc/passwd` and `/etc/group`, an image config, a
//! manifest per platform, an image index listing them, and `index.json` tagging the index.
//!
//! Output is reproducible (fixed mtimes, gzip header without time). It never merges into an
//! existing layout: the caller gives it an empty or absent folder.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MTIME: u64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";
const PASSWD: &[u8] =
    b"root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &[u8] = b"root:x:0:\nnogroup:x:65534:\n";

/// One platform's binary.
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub binary: Vec<u8>,
}

/// What every platform's image shares.
pub struct ImageSpec {
    /// Path of the binary inside the image, without the leading `/` (`bin/sensor-sim`).
    pub binary_path: String,
    /// The config's `config` object (Entrypoint, Env, User, ExposedPorts…).
    pub config: Value,
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
    dir: bool,
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, path, data)
}

/// The uncompressed layer tar: parent folders, the binary (0755), etc/passwd, etc/group, tmp/.
pub fn layer_tar(binary_path: &str, binary: &[u8]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: Vec<&str> = Vec::new();
    for (i, c) in binary_path.char_indices() {
        if c == '/' {
            dirs.push(&binary_path[..i]);
        }
    }
    for d in dirs.iter().filter(|d| **d != "etc") {
        append(&mut tar, &format!("{d}/"), b"", 0o755, true)?;
    }
    append(&mut tar, binary_path, binary, 0o755, false)?;
    append(&mut tar, "etc/", b"", 0o755, true)?;
    append(&mut tar, "etc/passwd", PASSWD, 0o644, false)?;
    append(&mut tar, "etc/group", GROUP, 0o644, false)?;
    append(&mut tar, "tmp/", b"", 0o1777, true)?;
    tar.into_inner()
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes)?;
    enc.finish()
}

fn write_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> io::Result<Value> {
    let d = digest(bytes);
    let path = dir
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    fs::write(path, bytes)?;
    Ok(json!({ "mediaType": media_type, "digest": d, "size": bytes.len() }))
}

fn write_json(dir: &Path, media_type: &str, v: &Value) -> io::Result<Value> {
    write_blob(dir, media_type, &serde_json::to_vec(v)?)
}

fn platform_json(p: &Platform) -> Value {
    let mut v = json!({ "os": p.os, "architecture": p.architecture });
    if let Some(var) = &p.variant {
        v["variant"] = json!(var);
    }
    v
}

/// Writes layer, config and manifest of one platform; returns the manifest descriptor
/// (with `platform`) and the compressed layer size.
fn write_platform(dir: &Path, spec: &ImageSpec, p: &Platform) -> io::Result<(Value, usize)> {
    let tar = layer_tar(&spec.binary_path, &p.binary)?;
    let gz = gzip(&tar)?;
    let layer = write_blob(dir, LAYER_TYPE, &gz)?;
    let mut config = platform_json(p);
    config["created"] = json!(CREATED);
    config["config"] = spec.config.clone();
    config["rootfs"] = json!({ "type": "layers", "diff_ids": [digest(&tar)] });
    config["history"] =
        json!([{ "created": CREATED, "created_by": "drover images/build.sh (oci-pack)" }]);
    let config_desc = write_json(dir, CONFIG_TYPE, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_desc,
        "layers": [layer],
    });
    let mut desc = write_json(dir, MANIFEST_TYPE, &manifest)?;
    desc["platform"] = platform_json(p);
    Ok((desc, gz.len()))
}

/// Writes the whole layout into `dir` (must not exist or be empty), tagging the image
/// index `tag`. Returns the index digest and, per platform, the compressed layer size.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    spec: &ImageSpec,
    platforms: &[Platform],
) -> io::Result<(String, Vec<usize>)> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not empty", dir.display()),
        ));
    }
    fs::create_dir_all(dir.join("blobs/sha256"))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut manifests = Vec::new();
    let mut sizes = Vec::new();
    for p in platforms {
        let (desc, size) = write_platform(dir, spec, p)?;
        manifests.push(desc);
        sizes.push(size);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests });
    let mut desc = write_json(dir, INDEX_TYPE, &index)?;
    let index_digest = desc["digest"].as_str().unwrap_or_default().to_string();
    desc["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let top = json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [desc] });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top)?)?;
    Ok((index_digest, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_holds_binary_and_passwd() {
        let tar = layer_tar("bin/x", b"ELF").expect("tar");
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["bin/", "bin/x", "etc/", "etc/passwd", "etc/group", "tmp/"]
        );
    }

    #[test]
    fn layout_is_reproducible_and_indexed() {
        let spec = ImageSpec {
            binary_path: "bin/x".into(),
            config: json!({ "Entrypoint": ["/bin/x"] }),
        };
        let plats = || {
            vec![
                Platform {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    variant: None,
                    binary: b"a".to_vec(),
                },
                Platform {
                    os: "linux".into(),
                    architecture: "arm".into(),
                    variant: Some("v7".into()),
                    binary: b"b".to_vec(),
                },
            ]
        };
        let t = tempfile::tempdir().expect("tmp");
        let (d1, _) = write_layout(&t.path().join("a"), "latest", &spec, &plats()).expect("a");
        let (d2, _) = write_layout(&t.path().join("b"), "latest", &spec, &plats()).expect("b");
        assert_eq!(d1, d2);
        let blob = t
            .path()
            .join("a/blobs/sha256")
            .join(d1.trim_start_matches("sha256:"));
        let index: Value = serde_json::from_slice(&fs::read(blob).expect("index")).expect("json");
        assert_eq!(index["manifests"][1]["platform"]["variant"], "v7");
        assert!(write_layout(&t.path().join("a"), "latest", &spec, &plats()).is_err());
    }
}
