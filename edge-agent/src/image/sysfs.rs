//! Small filesystem calls used by layer extraction that std does not offer.
//!
//! Every call here acts on the named path itself and never follows a symlink there.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tracing::debug;

/// Creates an overlayfs whiteout: a character device 0:0.
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    Ok(mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))?)
}

/// Creates a fifo (permissions are set by the caller).
/// True for an overlayfs whiteout: a character device 0:0.
pub fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

pub fn make_fifo(path: &Path, mode: u32) -> io::Result<()> {
    Ok(mknod(
        path,
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(mode),
        0,
    )?)
}

/// Sets atime and mtime without following symlinks; best effort.
pub fn set_mtime(path: &Path, secs: u64) {
    let t = TimeSpec::new(i64::try_from(secs).unwrap_or(0), 0);
    if let Err(e) = utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink) {
        debug!(path = %path.display(), "cannot set mtime: {e}");
    }
}

/// `lsetxattr(2)`: never follows a symlink at `path`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a
    // valid slice of `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
