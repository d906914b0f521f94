//! Writes the entries of one layer tarball into that layer's own folder, converting OCI
//! whiteouts to overlayfs form (`.wh.NAME` → char device 0:0, `.wh..wh..opq` → the
//! `trusted.overlay.opaque` xattr).
//!
//! It must never create anything outside the layer folder: names are checked lexically
//! (`paths.rs`), no parent component may be a symlink, nothing is opened or created by
//! following a symlink, and an existing entry at a destination is replaced, not written
//! through. The first unsafe entry refuses the whole layer (the caller deletes the folder),
//! and so does the first entry beyond the layer's budget (`limits.rs`), before it is written.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use tar::{Entry, EntryType};
use tracing::{debug, warn};

use super::ImageError;
use super::limits::{EntryMeter, LayerBudget};
use super::paths;
use super::sysfs::{self, set_mtime, set_xattr};

/// Extracts every entry of `archive` into `root` (an empty folder).
/// `lower`: the extracted layers below this one, bottom first; a hard link may name a file
/// of theirs (what `docker save` writes), which is then linked from there.
/// Returns the content bytes charged against `budget` (sparse files at their real size).
pub fn unpack<R: Read>(
    archive: &mut tar::Archive<R>,
    root: &Path,
    (layer, lower): (&str, &[PathBuf]),
    budget: LayerBudget,
) -> Result<u64, ImageError> {
    let mut u = Unpacker {
        root,
        layer,
        lower,
        dir_times: Vec::new(),
        meter: EntryMeter::new(budget),
    };
    let entries = archive
        .entries()
        .map_err(|e| u.io("reading the tar stream", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.io("reading the tar stream", e))?;
        u.meter.charge(entry.size(), layer)?;
        u.entry(&mut entry)?;
    }
    // Directory mtimes last: creating children changes them.
    for (dir, mtime) in u.dir_times.iter().rev() {
        set_mtime(dir, *mtime);
    }
    Ok(u.meter.content())
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    lower: &'a [PathBuf],
    dir_times: Vec<(PathBuf, u64)>,
    meter: EntryMeter,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, e: &mut Entry<R>) -> Result<(), ImageError> {
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = paths::normalize(&raw).map_err(|r| self.refuse(&name, r))?;
        let Some(file_name) = rel.file_name().map(|f| f.as_bytes().to_vec()) else {
            return Ok(()); // the layer root itself
        };
        self.prepare_parents(&rel, &name, true)?;
        if let Some(hidden) = file_name.strip_prefix(b".wh.") {
            return self.whiteout(&rel, hidden, &name);
        }
        let meta = self.meta(e.header(), &name)?;
        let dest = self.root.join(&rel);
        match e.header().entry_type() {
            EntryType::Regular if raw.ends_with(b"/") => self.dir(e, dest, &meta, &name),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(e, &dest, &meta, &name)
            }
            EntryType::Directory => self.dir(e, dest, &meta, &name),
            EntryType::Symlink => self.symlink(e, &rel, &meta, &name),
            EntryType::Link => self.hardlink(e, &dest, &name),
            EntryType::Fifo => self.fifo(&dest, &meta, &name),
            EntryType::Char | EntryType::Block => {
                warn!(layer = self.layer, entry = %name, "skipping device node in image layer");
                Ok(())
            }
            other => {
                debug!(layer = self.layer, entry = %name, "skipping tar entry of type {other:?}");
                Ok(())
            }
        }
    }

    fn meta(&self, h: &tar::Header, name: &str) -> Result<Meta, ImageError> {
        let ctx = || format!("reading the header of `{name}`");
        let id = |v: u64| {
            u32::try_from(v).map_err(|_| self.refuse(name, format!("uid/gid {v} is out of range")))
        };
        Ok(Meta {
            mode: h.mode().map_err(|e| self.io(ctx(), e))? & 0o7777,
            uid: id(h.uid().map_err(|e| self.io(ctx(), e))?)?,
            gid: id(h.gid().map_err(|e| self.io(ctx(), e))?)?,
            mtime: h.mtime().unwrap_or(0),
        })
    }

    /// Walks the folders above `rel`: each must be a real folder (never a symlink);
    /// missing ones are created when `create`, refused otherwise.
    fn prepare_parents(&self, rel: &Path, name: &str, create: bool) -> Result<(), ImageError> {
        let mut cur = self.root.to_path_buf();
        let mut prefix = PathBuf::new();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            cur.push(part);
            prefix.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.through_symlink(name, &prefix, &cur));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(
                        name,
                        format!("its parent `{}` is not a directory", prefix.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(|e| self.io(format!("creating folder for `{name}`"), e))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(self.refuse(
                        name,
                        format!(
                            "`{}` is not an earlier entry of this layer",
                            prefix.display()
                        ),
                    ));
                }
                Err(e) => return Err(self.io(format!("checking `{}`", prefix.display()), e)),
            }
        }
        Ok(())
    }

    fn through_symlink(&self, name: &str, prefix: &Path, link: &Path) -> ImageError {
        let target = fs::read_link(link).unwrap_or_default();
        let why = if paths::target_leaves_root(prefix, &target) {
            "which points outside the rootfs"
        } else {
            "(writing through symlinks is never allowed)"
        };
        let (p, t) = (prefix.display(), target.display());
        self.refuse(
            name,
            format!("it would be written through symlink `{p}` -> `{t}`, {why}"),
        )
    }

    /// Removes whatever is at `dest` (without following it), except a folder when
    /// `keep_dir`. Returns true when a folder was kept.
    fn clear(&self, dest: &Path, name: &str, keep_dir: bool) -> Result<bool, ImageError> {
        let res = match fs::symlink_metadata(dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() && keep_dir => return Ok(true),
            Ok(m) if m.is_dir() => fs::remove_dir_all(dest),
            Ok(_) => fs::remove_file(dest),
        };
        res.map(|()| false)
            .map_err(|e| self.io(format!("replacing `{name}`"), e))
    }

    fn file<R: Read>(
        &self,
        e: &mut Entry<R>,
        dest: &Path,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ImageError> {
        self.clear(dest, name, false)?;
        let err = |e| self.io(format!("writing `{name}`"), e);
        let mut opts = OpenOptions::new();
        opts.write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        let mut f = opts.open(dest).map_err(err)?;
        io::copy(e, &mut f).map_err(err)?;
        std::os::unix::fs::fchown(&f, Some(meta.uid), Some(meta.gid)).map_err(err)?;
        f.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(err)?;
        drop(f);
        self.pax_xattrs(e, dest, name);
        set_mtime(dest, meta.mtime);
        Ok(())
    }

    fn dir<R: Read>(
        &mut self,
        e: &mut Entry<R>,
        dest: PathBuf,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ImageError> {
        let err = |e| self.io(format!("creating folder `{name}`"), e);
        if !self.clear(&dest, name, true)? {
            DirBuilder::new().mode(0o700).create(&dest).map_err(err)?;
        }
        lchown(&dest, Some(meta.uid), Some(meta.gid)).map_err(err)?;
        fs::set_permissions(&dest, Permissions::from_mode(meta.mode)).map_err(err)?;
        self.pax_xattrs(e, &dest, name);
        self.dir_times.push((dest, meta.mtime));
        Ok(())
    }

    fn symlink<R: Read>(
        &self,
        e: &mut Entry<R>,
        rel: &Path,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ImageError> {
        let target = e
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        if target.is_empty() {
            return Err(self.refuse(name, "symlink without a target".into()));
        }
        let target = Path::new(OsStr::from_bytes(&target));
        if paths::relative_target_escapes(rel, target) {
            let t = target.display();
            return Err(self.refuse(
                name,
                format!("symlink target `{t}` climbs out of the layer root"),
            ));
        }
        let dest = self.root.join(rel);
        self.clear(&dest, name, false)?;
        let err = |e| self.io(format!("creating symlink `{name}`"), e);
        symlink(target, &dest).map_err(err)?;
        lchown(&dest, Some(meta.uid), Some(meta.gid)).map_err(err)?;
        set_mtime(&dest, meta.mtime);
        Ok(())
    }

    fn hardlink<R: Read>(
        &self,
        e: &mut Entry<R>,
        dest: &Path,
        name: &str,
    ) -> Result<(), ImageError> {
        let raw = e
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let target = paths::normalize(&raw)
            .map_err(|r| self.refuse(name, format!("hard link target `{shown}`: {r}")))?;
        if target.as_os_str().is_empty() {
            return Err(self.refuse(name, "hard link without a target".into()));
        }
        // Parents present here must be real folders; when one is missing, the target can
        // only be in a lower layer.
        let parents_here = target
            .ancestors()
            .skip(1)
            .all(|a| fs::symlink_metadata(self.root.join(a)).is_ok());
        if parents_here {
            self.prepare_parents(&target, name, false)?;
        }
        let here = self.root.join(&target);
        let found_here = if parents_here {
            fs::symlink_metadata(&here)
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        };
        let src = match found_here {
            Ok(m) if m.is_dir() => {
                return Err(self.refuse(name, format!("hard link target `{shown}` is a folder")));
            }
            Ok(_) if here == dest => return Ok(()),
            Ok(_) => here,
            Err(_) => self.in_lower(&target).ok_or_else(|| {
                self.refuse(
                    name,
                    format!(
                        "hard link target `{shown}` is neither an earlier entry of this layer nor a file of the layers below"
                    ),
                )
            })?,
        };
        self.clear(dest, name, false)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
        fs::hard_link(&src, dest).map_err(|e| self.io(format!("creating hard link `{name}`"), e))
    }

    /// `target` (normalized, relative) as a non-folder entry of the topmost lower layer
    /// that has it, reached without any symlink component; `None` when no layer has it
    /// or the topmost one that names it deleted it (a whiteout).
    fn in_lower(&self, target: &Path) -> Option<PathBuf> {
        for layer in self.lower.iter().rev() {
            let mut path = layer.clone();
            let mut parents = target.components().peekable();
            let mut reachable = true;
            while let Some(c) = parents.next() {
                path.push(c);
                if parents.peek().is_some() {
                    reachable = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                    if !reachable {
                        break;
                    }
                }
            }
            if !reachable {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if sysfs::is_whiteout(&m) => return None,
                Ok(m) if !m.is_dir() => return Some(path),
                Ok(_) => return None,
                Err(_) => {}
            }
        }
        None
    }

    fn fifo(&self, dest: &Path, meta: &Meta, name: &str) -> Result<(), ImageError> {
        self.clear(dest, name, false)?;
        let err = |e| self.io(format!("creating fifo `{name}`"), e);
        sysfs::make_fifo(dest, meta.mode).map_err(err)?;
        lchown(dest, Some(meta.uid), Some(meta.gid)).map_err(err)?;
        fs::set_permissions(dest, Permissions::from_mode(meta.mode)).map_err(err)?;
        set_mtime(dest, meta.mtime);
        Ok(())
    }

    fn whiteout(&self, rel: &Path, hidden: &[u8], name: &str) -> Result<(), ImageError> {
        let dir = self.root.join(rel.parent().unwrap_or(Path::new("")));
        if hidden == b".wh..opq" {
            return set_xattr(&dir, "trusted.overlay.opaque", b"y")
                .map_err(|e| self.io(format!("marking folder of `{name}` opaque"), e));
        }
        if hidden.starts_with(b".wh.") {
            warn!(layer = self.layer, entry = %name, "ignoring unknown aufs metadata entry");
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.refuse(name, "whiteout without a file name".into()));
        }
        let dest = dir.join(OsStr::from_bytes(hidden));
        self.clear(&dest, name, false)?;
        sysfs::make_whiteout(&dest)
            .map_err(|e| self.io(format!("creating whiteout for `{name}`"), e))
    }

    /// Applies `SCHILY.xattr.*` PAX records (e.g. file capabilities), best effort.
    /// `trusted.*` is never taken from a layer: it would steer overlayfs.
    fn pax_xattrs<R: Read>(&self, e: &mut Entry<R>, dest: &Path, name: &str) {
        let Ok(Some(exts)) = e.pax_extensions() else {
            return;
        };
        for ext in exts.flatten() {
            let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                continue;
            };
            if key.starts_with("trusted.") {
                warn!(layer = self.layer, entry = %name, xattr = key, "ignoring trusted xattr from image layer");
            } else if let Err(err) = set_xattr(dest, key, ext.value_bytes()) {
                warn!(layer = self.layer, entry = %name, xattr = key, "cannot set xattr: {err}");
            }
        }
    }

    fn refuse(&self, entry: &str, reason: String) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn io(&self, context: impl Into<String>, source: io::Error) -> ImageError {
        ImageError::Extract {
            layer: self.layer.to_string(),
            context: context.into(),
            source,
        }
    }
}
