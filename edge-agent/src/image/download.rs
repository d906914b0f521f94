//! One blob download's file handling: streaming the body into `<hex>.partial` while
//! hashing it, then renaming it to `<hex>` only when digest and size match.
//!
//! A partial file whose content cannot be the blob is deleted, never renamed: nothing
//! half-written or unverified ever sits under a blob's final name.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::client::Failure;
use super::digest::Digest;

const CHUNK: usize = 64 * 1024;

/// Where one blob goes and what it must be.
pub(super) struct BlobTarget<'a> {
    pub digest: &'a Digest,
    pub size: Option<u64>,
    pub dest: &'a Path,
    pub partial: PathBuf,
}

impl BlobTarget<'_> {
    /// Copies the body to the partial file (hashing it); returns the bytes now on disk.
    pub fn stream(
        &self,
        mut body: impl Read,
        file: &mut File,
        hasher: &mut Sha256,
        start: u64,
        on_disk: &mut dyn FnMut(u64),
    ) -> Result<u64, Failure> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = start;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Transient(format!("reading blob: {e}"))),
            };
            if self.size.is_some_and(|s| total + n as u64 > s) {
                let _ = fs::remove_file(&self.partial);
                return Err(Failure::Fatal(
                    self.mismatch("more bytes than expected".into()),
                ));
            }
            file.write_all(&buf[..n]).map_err(|source| {
                Failure::Fatal(ImageError::Io {
                    context: format!("writing {}", self.partial.display()),
                    source,
                })
            })?;
            hasher.update(&buf[..n]);
            total += n as u64;
            on_disk(total);
        }
    }

    /// Verifies a partial file that is already complete.
    pub fn finish(&self, have: u64) -> Result<(), Failure> {
        let mut hasher = Sha256::new();
        hash_file(&self.partial, &mut hasher).map_err(|source| {
            Failure::Fatal(ImageError::Io {
                context: format!("reading {}", self.partial.display()),
                source,
            })
        })?;
        self.check_and_rename(hasher, have)
    }

    /// Renames the partial file into place when digest and size match, else deletes it.
    pub fn check_and_rename(&self, hasher: Sha256, total: u64) -> Result<(), Failure> {
        let actual = hex::encode(hasher.finalize());
        if actual != self.digest.hex() || self.size.is_some_and(|s| s != total) {
            let _ = fs::remove_file(&self.partial);
            return Err(Failure::Fatal(
                self.mismatch(format!("sha256:{actual} ({total} bytes)")),
            ));
        }
        let io_fail =
            |context: String| move |source| Failure::Fatal(ImageError::Io { context, source });
        fs::rename(&self.partial, self.dest).map_err(io_fail(format!(
            "renaming {} into place",
            self.partial.display()
        )))?;
        if let Some(dir) = self.dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_fail(format!("syncing {}", dir.display())))?;
        }
        Ok(())
    }

    fn mismatch(&self, actual: String) -> ImageError {
        let size = self.size.map_or("?".into(), |s| s.to_string());
        ImageError::DigestMismatch {
            path: self.dest.to_path_buf(),
            expected: format!("{} ({size} bytes)", self.digest),
            actual,
        }
    }
}

pub(super) fn hash_file(path: &Path, hasher: &mut Sha256) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(()),
            n => hasher.update(&buf[..n]),
        }
    }
}
