//! Builds real OCI image layouts (as written by `umoci` or `skopeo copy … oci:`) for
//! end-to-end tests, without external tools: gzip layers, sha256 digests, `index.json`
//! with `org.opencontainers.image.ref.name` annotations, and the `oci-layout` file.
//!
//! Test-only: it writes wherever it is told and validates nothing — `add_raw_entry`
//! exists to write malicious layers on purpose. Never use it on real images.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Busybox applets linked (relatively) into `bin/` by [`busybox_layout`].
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "echo", "ls", "head", "dd", "yes", "env", "true", "false", "mkdir", "rm",
    "seq", "wc", "tail", "date", "grep", "ps", "kill", "id", "hostname", "ip", "touch", "cut",
    "sed", "wget", "nc", "free", "cp", "mv", "printf", "test", "uname", "sync", "cmp",
];

/// Builds the tar bytes of one layer. Entries are written in the order they are added.
pub struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            mtime: 1_700_000_000,
        }
    }

    pub fn add_dir(self, path: &str, mode: u32) -> Self {
        self.add_raw_entry(path.as_bytes(), tar::EntryType::Directory, None, b"", mode)
    }

    pub fn add_file(self, path: &str, bytes: &[u8], mode: u32) -> Self {
        self.add_raw_entry(path.as_bytes(), tar::EntryType::Regular, None, bytes, mode)
    }

    /// A regular file owned by `uid:gid`.
    pub fn add_owned_file(
        mut self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Self {
        let mut h = self.header(
            path.as_bytes(),
            tar::EntryType::Regular,
            None,
            bytes.len() as u64,
            mode,
        );
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.append(&h, path.as_bytes(), bytes);
        self
    }

    pub fn add_symlink(self, path: &str, target: &str) -> Self {
        self.add_raw_entry(
            path.as_bytes(),
            tar::EntryType::Symlink,
            Some(target.as_bytes()),
            b"",
            0o777,
        )
    }

    pub fn add_hardlink(self, path: &str, target: &str) -> Self {
        self.add_raw_entry(
            path.as_bytes(),
            tar::EntryType::Link,
            Some(target.as_bytes()),
            b"",
            0o644,
        )
    }

    pub fn add_fifo(self, path: &str, mode: u32) -> Self {
        self.add_raw_entry(path.as_bytes(), tar::EntryType::Fifo, None, b"", mode)
    }

    /// An OCI whiteout deleting `path` (e.g. `etc/motd` → `etc/.wh.motd`).
    pub fn add_whiteout(self, path: &str) -> Self {
        let wh = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.add_file(&wh, b"", 0o644)
    }

    /// An OCI opaque marker: hides everything below `dir` in lower layers.
    pub fn add_opaque(self, dir: &str) -> Self {
        self.add_file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
        )
    }

    /// Any entry with a name and link name written verbatim (absolute paths, `..`, …),
    /// for tests of malicious layers. Names up to 100 bytes are written raw; longer
    /// ones go through GNU long-name records (which refuse `..`).
    pub fn add_raw_entry(
        mut self,
        path: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
        mode: u32,
    ) -> Self {
        let h = self.header(path, kind, link, data.len() as u64, mode);
        self.append(&h, path, data);
        self
    }

    /// The finished tar bytes (uncompressed).
    pub fn finish(self) -> Vec<u8> {
        self.builder
            .into_inner()
            .expect("writing a tar into memory cannot fail")
    }

    fn header(
        &self,
        path: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        size: u64,
        mode: u32,
    ) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        let old = h.as_old_mut();
        if path.len() <= old.name.len() {
            old.name[..path.len()].copy_from_slice(path);
        }
        if let Some(link) = link {
            assert!(
                link.len() <= old.linkname.len(),
                "link names over 100 bytes are not supported here"
            );
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_cksum();
        h
    }

    fn append(&mut self, h: &tar::Header, path: &[u8], data: &[u8]) {
        let res = if path.len() <= 100 {
            self.builder.append(h, data)
        } else {
            let mut h = h.clone();
            let p = String::from_utf8_lossy(path).into_owned();
            self.builder.append_data(&mut h, p, data)
        };
        res.expect("appending to an in-memory tar");
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Gzip-compresses `bytes` (fast level: these are test images).
pub fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

/// OCI architecture name of this host (`x86_64` → `amd64`, `aarch64` → `arm64`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// One platform's image inside a multi-platform layout.
pub struct PlatformImage {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Uncompressed tar bytes, bottom layer first.
    pub layers: Vec<Vec<u8>>,
    /// The config's `config` section (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`).
    pub config: Value,
}

/// Writes a single-platform image (for this host's architecture) into the layout at
/// `dir` (created or extended) tagged `tag`; returns the manifest digest.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    config: Value,
) -> io::Result<String> {
    init_layout(dir)?;
    let desc = write_image(dir, "linux", host_arch(), None, layers, config)?;
    let digest = desc["digest"].as_str().unwrap_or_default().to_string();
    add_to_index(dir, tag, desc)?;
    Ok(digest)
}

/// Writes a multi-platform image: one manifest per entry, an image index listing them
/// with their platforms, tagged `tag` in `index.json`. Returns the image index digest.
pub fn write_multiplatform_layout(
    dir: &Path,
    tag: &str,
    images: &[PlatformImage],
) -> io::Result<String> {
    init_layout(dir)?;
    let mut manifests = Vec::new();
    for img in images {
        let variant = img.variant.as_deref();
        let mut desc = write_image(
            dir,
            &img.os,
            &img.architecture,
            variant,
            &img.layers,
            img.config.clone(),
        )?;
        let mut platform = json!({ "os": img.os, "architecture": img.architecture });
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        desc["platform"] = platform;
        manifests.push(desc);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests });
    let desc = write_json_blob(dir, INDEX_TYPE, &index)?;
    let digest = desc["digest"].as_str().unwrap_or_default().to_string();
    add_to_index(dir, tag, desc)?;
    Ok(digest)
}

/// A busybox image from the host's `/bin/busybox` (Debian's busybox-static): `bin/busybox`
/// with relative applet symlinks, `etc/passwd`, `etc/group`, `tmp/` (1777), empty `proc/`,
/// `sys/`, `dev/`; config `Cmd ["/bin/sh"]`, `Env PATH=/bin`.
pub fn busybox_layout(dir: &Path, tag: &str) -> io::Result<()> {
    let config = json!({ "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] });
    write_layout(dir, tag, &[busybox_layer()?], config).map(drop)
}

/// The one layer of [`busybox_layout`], to build other images on.
pub fn busybox_layer() -> io::Result<Vec<u8>> {
    let busybox = fs::read("/bin/busybox").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading /bin/busybox (install busybox-static): {e}"),
        )
    })?;
    let mut layer =
        LayerBuilder::new()
            .add_dir("bin", 0o755)
            .add_file("bin/busybox", &busybox, 0o755);
    for applet in BUSYBOX_APPLETS {
        layer = layer.add_symlink(&format!("bin/{applet}"), "busybox");
    }
    let passwd =
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = b"root:x:0:\nnogroup:x:65534:\n";
    let layer = layer
        .add_dir("etc", 0o755)
        .add_file("etc/passwd", passwd, 0o644)
        .add_file("etc/group", group, 0o644)
        .add_dir("tmp", 0o1777)
        .add_dir("proc", 0o755)
        .add_dir("sys", 0o755)
        .add_dir("dev", 0o755)
        .add_dir("root", 0o700)
        .finish();
    Ok(layer)
}

/// Creates `blobs/sha256/` and the `oci-layout` file.
pub fn init_layout(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir.join("blobs").join("sha256"))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
}

/// Writes layers, config and manifest blobs; returns the manifest descriptor.
fn write_image(
    dir: &Path,
    os: &str,
    arch: &str,
    variant: Option<&str>,
    layers: &[Vec<u8>],
    config: Value,
) -> io::Result<Value> {
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(sha256_digest(tar));
        layer_descs.push(write_blob(dir, LAYER_TYPE, &gzip(tar)?)?);
    }
    let mut image_config = json!({
        "architecture": arch,
        "os": os,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    if let Some(v) = variant {
        image_config["variant"] = json!(v);
    }
    let config_desc = write_json_blob(dir, CONFIG_TYPE, &image_config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_desc,
        "layers": layer_descs,
    });
    write_json_blob(dir, MANIFEST_TYPE, &manifest)
}

fn write_json_blob(dir: &Path, media_type: &str, value: &Value) -> io::Result<Value> {
    write_blob(dir, media_type, &serde_json::to_vec(value)?)
}

/// Writes `bytes` as a blob; returns its descriptor.
pub fn write_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> io::Result<Value> {
    let digest = sha256_digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    fs::write(dir.join("blobs").join("sha256").join(hex), bytes)?;
    Ok(json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }))
}

/// Adds `desc` to `index.json` under `tag`, replacing an entry with the same tag.
pub fn add_to_index(dir: &Path, tag: &str, mut desc: Value) -> io::Result<()> {
    let path = dir.join("index.json");
    let mut index = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({ "schemaVersion": 2, "manifests": [] })
        }
        Err(e) => return Err(e),
    };
    desc["annotations"] = json!({ REF_NAME: tag });
    let list = index["manifests"]
        .as_array_mut()
        .ok_or_else(|| io::Error::other("index.json has no manifests array"))?;
    list.retain(|d| d["annotations"][REF_NAME] != tag);
    list.push(desc);
    fs::write(path, serde_json::to_vec_pretty(&index)?)
}
