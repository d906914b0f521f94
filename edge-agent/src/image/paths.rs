//! Lexical checks on paths found in layer tarballs.
//!
//! Pure functions: they decide whether a name may be used inside a layer folder and
//! never touch the filesystem.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Turns an entry name into a relative path of normal components (dropping `.` and a
/// `./` prefix). Absolute paths and `..` components are refused; an empty result means
/// the layer root itself.
pub fn normalize(raw: &[u8]) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute".into()),
            Component::ParentDir => return Err("the path contains a `..` component".into()),
        }
    }
    Ok(out)
}

/// True when a symlink at `link` (normalized, relative to the layer root) with a
/// relative `target` climbs above the layer root when resolved lexically from the
/// link's folder. Absolute targets never escape: they resolve inside the container.
pub fn relative_target_escapes(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            _ => {}
        }
    }
    false
}

/// True when a symlink target may lead outside the layer root (absolute or climbing).
pub fn target_leaves_root(link: &Path, target: &Path) -> bool {
    target.is_absolute() || relative_target_escapes(link, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_relative_names() {
        assert_eq!(
            normalize(b"./etc/passwd").unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(normalize(b"etc//x/./y/").unwrap(), PathBuf::from("etc/x/y"));
        assert_eq!(normalize(b"./").unwrap(), PathBuf::new());
        assert_eq!(normalize(b"a..b/..c").unwrap(), PathBuf::from("a..b/..c"));
    }

    #[test]
    fn refuses_absolute_and_parent() {
        assert!(normalize(b"/etc/passwd").is_err());
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"a/..").is_err());
    }

    #[test]
    fn symlink_escape_is_lexical_from_link_folder() {
        let esc = |l: &str, t: &str| relative_target_escapes(Path::new(l), Path::new(t));
        assert!(esc("etc/x", "../../../host"));
        assert!(esc("x", "../y"));
        assert!(!esc("etc/x", "../bin/sh"));
        assert!(!esc("bin/sh", "busybox"));
        assert!(!esc("bin/sh", "/bin/busybox"));
        assert!(esc("a/b", "c/../../../d"));
        assert!(!esc("a/b", "./c/.."));
        assert!(target_leaves_root(Path::new("a"), Path::new("/x")));
    }
}
