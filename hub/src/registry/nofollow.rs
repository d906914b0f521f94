//! Reading an image layout without following symbolic links: the folder the user named is
//! opened once (it may itself be a link: the user chose it), and every file below it is
//! opened one path component at a time with `openat(O_NOFOLLOW)`, so that neither a
//! linked blob, a linked `index.json` nor a linked `blobs/` folder makes the hub (root)
//! read a file outside the layout. Only regular files are read (a FIFO would hang the
//! import). This module must never follow a link below the layout folder, and never puts
//! a file's content in an error.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::RegistryError;

/// An opened layout folder.
pub(crate) struct LayoutDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl LayoutDir {
    /// Opens the folder `path` (following a link at `path` itself).
    pub(crate) fn open(path: &Path) -> Result<LayoutDir, RegistryError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| RegistryError::Io {
            what: "layout: cannot open the folder",
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(LayoutDir {
            fd,
            path: path.to_owned(),
        })
    }

    /// The layout folder as given.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the regular file at `components` below the folder (e.g. `["blobs",
    /// "sha256", hex]`), refusing a symbolic link at any of them.
    pub(crate) fn open_file(&self, components: &[&str]) -> Result<File, RegistryError> {
        let mut path = self.path.clone();
        let mut dir: Option<OwnedFd> = None;
        for (i, name) in components.iter().enumerate() {
            let last = i + 1 == components.len();
            path.push(name);
            let at = dir.as_ref().unwrap_or(&self.fd);
            let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            // Non-blocking, so that opening a FIFO returns at once (refused below).
            flags |= match last {
                true => OFlags::NONBLOCK,
                false => OFlags::DIRECTORY,
            };
            let fd = rustix::fs::openat(at, *name, flags, Mode::empty())
                .map_err(|e| self.refusal(at, name, &path, e, last))?;
            dir = Some(fd);
        }
        let fd = dir.ok_or_else(|| RegistryError::Invalid("no file named".into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(RegistryError::Invalid(format!(
                "layout: {} is not a regular file (expected a blob or index.json)",
                path.display()
            )));
        }
        // Back to blocking reads (a regular file never blocks; this keeps `File` plain).
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| io_error(&path, e))?;
        Ok(File::from(fd))
    }

    /// The error for a failed `openat`: a clear refusal when `name` is a link.
    fn refusal(
        &self,
        at: &OwnedFd,
        name: &str,
        path: &Path,
        e: Errno,
        last: bool,
    ) -> RegistryError {
        let linked = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink);
        if linked {
            let what = match last {
                true => "a file",
                false => "a folder",
            };
            return RegistryError::Invalid(format!(
                "layout: {} is a symbolic link; expected {what} inside the layout folder {} \
                 (links are never followed: copy the image with its files, e.g. `cp -rL`)",
                path.display(),
                self.path.display()
            ));
        }
        io_error(path, e)
    }
}

fn io_error(path: &Path, e: Errno) -> RegistryError {
    RegistryError::Io {
        what: "layout: cannot read",
        path: path.to_owned(),
        source: e.into(),
    }
}
