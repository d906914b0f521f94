//! `image import`: copies an OCI image layout (one or many platforms, nested indexes) into
//! the registry. Every blob is copied into a private staging folder while it is hashed,
//! checked against its descriptor's digest and size, and only when the whole image graph
//! has verified are the blobs renamed into `blobs/sha256/` and the index updated — a
//! failed import leaves neither blobs nor tags behind.
//!
//! This module reads the layout folder and writes only below the registry's root. It
//! never follows a symbolic link below the layout folder (`nofollow`), and never puts a
//! layout file's content or hash in an error: it says which file and what was expected.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::nofollow::LayoutDir;
use super::{
    DOCKER_LIST, DOCKER_MANIFEST, Digest, ManifestEntry, OCI_INDEX, OCI_MANIFEST, Registry,
    RegistryError, Repository, TagEntry, check_name, check_tag, io_err,
};
use crate::views::{ImageView, ImportReport, ImportRequest};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Largest index.json, manifest or config the import parses.
const MAX_JSON: u64 = 8 << 20;
/// Image indexes nested deeper than this are refused.
const MAX_DEPTH: u32 = 4;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    fn label(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Deserialize)]
struct LayoutIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Registry {
    /// Imports the layout `req.path` (absolute, on the hub's machine).
    pub fn import(&self, req: &ImportRequest) -> Result<ImportReport, RegistryError> {
        let layout = Path::new(&req.path);
        if !layout.is_absolute() {
            return Err(RegistryError::Invalid(format!(
                "layout path {:?} must be absolute (it is read by the hub process)",
                req.path
            )));
        }
        let name = match &req.name {
            Some(n) => n.clone(),
            None => default_name(layout)?,
        };
        check_name(&name)?;
        let layout = LayoutDir::open(layout)?;
        let index_path = layout.path().join("index.json");
        let file = layout.open_file(&["index.json"])?;
        let index: LayoutIndex =
            serde_json::from_slice(&read_json(file, &index_path, MAX_JSON)?)
                .map_err(|e| not_json(&index_path, "an OCI image layout index", &e))?;
        let selected = select(&index.manifests, req.tag.as_deref())?;
        let staging = Staging::new(self)?;
        let mut walk = Walk {
            reg: self,
            layout: &layout,
            staging: &staging.0,
            staged: BTreeMap::new(),
            repo: Repository::default(),
            bytes_copied: 0,
        };
        let mut images = Vec::new();
        for (tag, desc) in selected {
            let mut reach = BTreeMap::new();
            let mut platforms = walk.visit(&desc, &mut reach, 0)?;
            platforms.retain(|p| p != "unknown/unknown");
            platforms.dedup();
            let (digest, entry) = walk
                .repo
                .resolve(&desc.digest)
                .map(|(d, e)| (d, e.clone()))
                .ok_or_else(|| RegistryError::Invalid(format!("{} is no manifest", desc.digest)))?;
            let t = TagEntry {
                digest,
                media_type: entry.media_type,
                platforms,
                size: reach.values().sum(),
            };
            images.push(view(&name, &tag, &t));
            walk.repo.tags.insert(tag, t);
        }
        let (repo, blobs_copied, bytes_copied) = walk.finish()?;
        self.commit(&name, repo)?;
        Ok(ImportReport {
            images,
            blobs_copied,
            bytes_copied,
        })
    }
}

fn view(name: &str, tag: &str, t: &TagEntry) -> ImageView {
    ImageView {
        name: name.to_owned(),
        tag: tag.to_owned(),
        digest: t.digest.clone(),
        media_type: t.media_type.clone(),
        platforms: t.platforms.clone(),
        size: t.size,
    }
}

fn default_name(layout: &Path) -> Result<String, RegistryError> {
    layout
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            RegistryError::Invalid(format!("{}: give the image a --name", layout.display()))
        })
}

/// The `(tag, descriptor)` pairs to import; see `image import --help`.
fn select(
    entries: &[Descriptor],
    tag: Option<&str>,
) -> Result<Vec<(String, Descriptor)>, RegistryError> {
    if entries.is_empty() {
        return Err(RegistryError::Invalid(
            "the layout's index.json lists no images".into(),
        ));
    }
    let mut tagged = Vec::new();
    for e in entries {
        if let Some(r) = e.annotations.get(REF_NAME) {
            tagged.push((ref_tag(r)?, e.clone()));
        }
    }
    if let Some(t) = tag {
        check_tag(t)?;
        if let [only] = entries {
            return Ok(vec![(t.to_owned(), only.clone())]);
        }
        let found: Vec<_> = tagged.into_iter().filter(|(r, _)| r == t).collect();
        if found.is_empty() {
            return Err(RegistryError::Invalid(format!(
                "the layout holds {} images and none is tagged {t:?}: --tag must name one of them",
                entries.len()
            )));
        }
        return Ok(found);
    }
    match (tagged.is_empty(), entries) {
        (false, _) => Ok(tagged),
        (true, [only]) => Ok(vec![("latest".to_owned(), only.clone())]),
        (true, _) => Err(RegistryError::Invalid(format!(
            "the layout holds {} untagged images: name one with --tag",
            entries.len()
        ))),
    }
}

/// A tag from a `ref.name` annotation: the tag itself, or the part after the last `:` of
/// a full reference (`docker.io/library/busybox:1.36`).
fn ref_tag(r: &str) -> Result<String, RegistryError> {
    if check_tag(r).is_ok() {
        return Ok(r.to_owned());
    }
    match r.rsplit_once(':') {
        Some((_, t)) if !t.contains('/') && check_tag(t).is_ok() => Ok(t.to_owned()),
        _ => Err(RegistryError::Invalid(format!(
            "cannot make a tag of a {REF_NAME} annotation in index.json (expected a tag or \
             a reference ending in :TAG, with letters, digits, `_`, `.`, `-`): give one with --tag"
        ))),
    }
}

/// Reads `f` (opened from `path`), at most `max` bytes.
fn read_json(f: fs::File, path: &Path, max: u64) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("layout: cannot read", path))?;
    if bytes.len() as u64 > max {
        return Err(RegistryError::Invalid(format!(
            "{}: larger than {max} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A JSON error as "where, what was expected": serde's own message may quote the file.
fn not_json(path: &Path, expected: &str, e: &serde_json::Error) -> RegistryError {
    let kind = match e.classify() {
        serde_json::error::Category::Data => "the JSON has the wrong shape",
        _ => "not valid JSON",
    };
    RegistryError::Invalid(format!(
        "{}:{}:{}: expected {expected}: {kind}",
        path.display(),
        e.line(),
        e.column()
    ))
}

/// A private folder under `registry/tmp/`, removed with everything in it when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(reg: &Registry) -> Result<Staging, RegistryError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = reg.root().join("tmp").join(format!(
            "import-{}-{}-{n}",
            std::process::id(),
            crate::now_ms()
        ));
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The walk over one layout's image graph.
struct Walk<'a> {
    reg: &'a Registry,
    layout: &'a LayoutDir,
    staging: &'a Path,
    /// Blobs copied (and verified) into the staging folder.
    staged: BTreeMap<Digest, PathBuf>,
    repo: Repository,
    bytes_copied: u64,
}

impl Walk<'_> {
    /// Copies the blob `desc` and everything it references; returns its platforms.
    fn visit(
        &mut self,
        desc: &Descriptor,
        reach: &mut BTreeMap<String, u64>,
        depth: u32,
    ) -> Result<Vec<String>, RegistryError> {
        if depth > MAX_DEPTH {
            return Err(RegistryError::Invalid(format!(
                "image indexes nested deeper than {MAX_DEPTH}"
            )));
        }
        let path = self.fetch(desc)?;
        reach.insert(desc.digest.clone(), desc.size);
        let doc: Value = serde_json::from_slice(&read_own(&path)?)
            .map_err(|e| not_json(&self.blob_in_layout(desc), "an image manifest or index", &e))?;
        let media = match doc.get("mediaType").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None if !desc.media_type.is_empty() => desc.media_type.clone(),
            None if doc.get("manifests").is_some() => OCI_INDEX.to_owned(),
            None => OCI_MANIFEST.to_owned(),
        };
        let entry = ManifestEntry {
            media_type: media.clone(),
            size: desc.size,
        };
        self.repo.manifests.insert(desc.digest.clone(), entry);
        match media.as_str() {
            OCI_INDEX | DOCKER_LIST => self.visit_index(&doc, reach, depth),
            OCI_MANIFEST | DOCKER_MANIFEST => self.visit_manifest(&doc, reach),
            _ => Err(RegistryError::Invalid(format!(
                "{}: unsupported manifest media type: expected {OCI_INDEX}, {OCI_MANIFEST}, \
                 {DOCKER_LIST} or {DOCKER_MANIFEST}",
                self.blob_in_layout(desc).display()
            ))),
        }
    }

    fn visit_index(
        &mut self,
        doc: &Value,
        reach: &mut BTreeMap<String, u64>,
        depth: u32,
    ) -> Result<Vec<String>, RegistryError> {
        let mut platforms = Vec::new();
        for d in descriptors(doc.get("manifests"))? {
            let below = self.visit(&d, reach, depth + 1)?;
            match &d.platform {
                Some(p) => platforms.push(p.label()),
                None => platforms.extend(below),
            }
        }
        Ok(platforms)
    }

    fn visit_manifest(
        &mut self,
        doc: &Value,
        reach: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<String>, RegistryError> {
        let config: Descriptor = descriptors(
            doc.get("config")
                .map(|c| Value::Array(vec![c.clone()]))
                .as_ref(),
        )?
        .pop()
        .ok_or_else(|| RegistryError::Invalid("image manifest without a config".into()))?;
        let mut blobs = descriptors(doc.get("layers"))?;
        blobs.push(config.clone());
        for b in &blobs {
            self.fetch(b)?;
            reach.insert(b.digest.clone(), b.size);
            self.repo.blobs.insert(b.digest.clone(), b.size);
        }
        let path = self.fetch(&config)?;
        let platform = serde_json::from_slice::<Platform>(&read_own(&path)?)
            .map(|p| p.label())
            .unwrap_or_else(|_| "unknown/unknown".to_owned());
        Ok(vec![platform])
    }

    /// Makes sure the blob is in the store or staged, verified; returns where to read it.
    fn fetch(&mut self, desc: &Descriptor) -> Result<PathBuf, RegistryError> {
        let digest = Digest::parse(&desc.digest)?;
        if let Some(p) = self.staged.get(&digest) {
            return Ok(p.clone());
        }
        let stored = self.reg.blob_path(&digest);
        if let Ok(meta) = fs::metadata(&stored) {
            if meta.len() != desc.size {
                return Err(RegistryError::Mismatch {
                    digest: desc.digest.clone(),
                    found: format!(
                        "descriptor says {} bytes, the content is {}",
                        desc.size,
                        meta.len()
                    ),
                });
            }
            return Ok(stored);
        }
        let src = self.blob_in_layout(desc);
        let input = self.layout.open_file(&["blobs", "sha256", digest.hex()])?;
        let dst = self.staging.join(digest.hex());
        copy_verified(input, &src, &dst, &digest, desc.size)?;
        self.bytes_copied += desc.size;
        self.staged.insert(digest, dst.clone());
        Ok(dst)
    }

    /// Where the blob `desc` is in the layout (for messages).
    fn blob_in_layout(&self, desc: &Descriptor) -> PathBuf {
        let hex = desc.digest.strip_prefix("sha256:").unwrap_or(&desc.digest);
        self.layout.path().join("blobs").join("sha256").join(hex)
    }

    /// Moves the staged blobs into the store; returns the repository entry and counts.
    fn finish(self) -> Result<(Repository, u64, u64), RegistryError> {
        for (digest, path) in &self.staged {
            let dst = self.reg.blob_path(digest);
            fs::rename(path, &dst).map_err(io_err("cannot store blob", &dst))?;
        }
        let dir = self.reg.root().join("blobs").join("sha256");
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync", &dir))?;
        Ok((self.repo, self.staged.len() as u64, self.bytes_copied))
    }
}

fn descriptors(v: Option<&Value>) -> Result<Vec<Descriptor>, RegistryError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            RegistryError::Invalid(
                "bad descriptor list in a manifest: expected descriptors with a mediaType, \
                 a digest (sha256:<64 hex>) and a size"
                    .into(),
            )
        }),
    }
}

/// A manifest or config already copied (staged or stored): verified, ours.
fn read_own(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let f = fs::File::open(path).map_err(io_err("cannot read", path))?;
    read_json(f, path, MAX_JSON)
}

/// Copies `input` (opened from `src`) to `dst` while hashing it; refuses (and removes
/// `dst`) unless it is exactly `size` bytes hashing to `digest`.
fn copy_verified(
    mut input: fs::File,
    src: &Path,
    dst: &Path,
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    let mut out = fs::File::create(dst).map_err(io_err("cannot write", dst))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(io_err("layout: cannot read blob", src))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("cannot write", dst))?;
    }
    let found = format!("sha256:{}", hex::encode(hasher.finalize()));
    // Never the hash found: it would tell whoever asked something about a file's content.
    let problem = if total > size {
        Some(format!("more than the {size} bytes its descriptor says"))
    } else if total != size {
        Some(format!("{total} bytes, its descriptor says {size}"))
    } else if found != digest.as_str() {
        Some(format!(
            "the content of {} does not hash to that digest",
            src.display()
        ))
    } else {
        None
    };
    if let Some(found) = problem {
        drop(out);
        let _ = fs::remove_file(dst);
        return Err(RegistryError::Mismatch {
            digest: digest.to_string(),
            found,
        });
    }
    out.sync_all().map_err(io_err("cannot write", dst))
}
