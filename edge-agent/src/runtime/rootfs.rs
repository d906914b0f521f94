//! A container's root filesystem: an overlayfs of the image's unpacked layers (read-only,
//! shared by every container of that image) with a private writable upper layer.
//!
//! It must never write into a layer folder: layers belong to the image store, and only
//! `upper/` and `work/` are the container's own. Paths inside the mounted rootfs come from
//! the image: they are resolved inside it (pathrs), never through the host's view.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("overlay for {0}: the image has no layers")]
    NoLayers(PathBuf),
    #[error("overlay for {target}: path {path:?} contains ':' or ',', which overlayfs cannot take")]
    BadPath { target: PathBuf, path: PathBuf },
    #[error(
        "overlay for {target}: mount options are {len} bytes for {layers} layers, more than the \
         page size ({page} bytes); the image has too many layers or the state folder path is too long"
    )]
    TooLong {
        target: PathBuf,
        len: usize,
        layers: usize,
        page: usize,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} /{path} in the image: {source}")]
    InRootfs {
        what: &'static str,
        path: String,
        source: pathrs::error::Error,
    },
    #[error("{what} {path}: {source}")]
    Sys {
        what: &'static str,
        path: PathBuf,
        source: Errno,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

fn sys_err(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Sys { what, path, source }
}

/// Mounts `layers` (bottom first, as in the image manifest) with `upper`/`work` on `target`,
/// creating the three folders. Does nothing when `target` is already a mount point.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    for dir in [upper, work, target] {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    if is_mounted(target)? {
        return Ok(());
    }
    let options = overlay_options(layers, upper, work, target)?;
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(sys_err("mounting overlay on", target))
}

/// The mount data: `lowerdir=TOP:…:BOTTOM,upperdir=…,workdir=…`, checked against the
/// kernel's one-page limit.
fn overlay_options(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<String, RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers(target.to_path_buf()));
    }
    let all = layers.iter().map(PathBuf::as_path).chain([upper, work]);
    let mut text = Vec::with_capacity(layers.len() + 2);
    for path in all {
        let s = path.to_string_lossy();
        if s.contains(':') || s.contains(',') {
            let path = path.to_path_buf();
            return Err(RootfsError::BadPath {
                target: target.to_path_buf(),
                path,
            });
        }
        text.push(s);
    }
    let (lowers, rest) = text.split_at(layers.len());
    let lower: Vec<&str> = lowers.iter().rev().map(|s| s.as_ref()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        rest[0],
        rest[1]
    );
    let page = page_size();
    if options.len() + 1 > page {
        let (len, layers) = (options.len(), layers.len());
        return Err(RootfsError::TooLong {
            target: target.to_path_buf(),
            len,
            layers,
            page,
        });
    }
    Ok(options)
}

fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Makes `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` of a freshly mounted rootfs
/// plain files the runtime's bind mounts can land on. An image may have a dangling symlink
/// there (systemd's `resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`, on which
/// libcontainer's mount fails), a symlink to a host path or a FIFO: each is replaced by an
/// empty file in the container's own upper layer (the image is untouched). A missing file
/// is left to the runtime, which creates it inside the rootfs; a folder is left as it is.
pub fn prepare_etc_targets(rootfs: &Path) -> Result<(), RootfsError> {
    use pathrs::flags::OpenFlags;
    use std::os::unix::fs::PermissionsExt;
    let root = pathrs::Root::open(rootfs).map_err(|source| RootfsError::InRootfs {
        what: "opening the rootfs for",
        path: "etc".into(),
        source,
    })?;
    for name in crate::runtime::spec::ETC_FILES {
        let rel = format!("etc/{name}");
        let Ok(found) = root.resolve_nofollow(&rel) else {
            continue;
        };
        let meta = fs::File::from(std::os::fd::OwnedFd::from(found)).metadata();
        if meta.is_ok_and(|m| m.is_file() || m.is_dir()) {
            continue;
        }
        let in_rootfs = |what| {
            let path = rel.clone();
            move |source| RootfsError::InRootfs { what, path, source }
        };
        root.remove_file(&rel).map_err(in_rootfs("replacing"))?;
        let flags = OpenFlags::O_WRONLY | OpenFlags::O_EXCL | OpenFlags::O_NOFOLLOW;
        root.create_file(&rel, flags, &fs::Permissions::from_mode(0o644))
            .map_err(in_rootfs("creating"))?;
    }
    Ok(())
}

/// Unmounts `target`; detaches it lazily when busy. Not mounted (or missing) is fine.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    if !target.exists() || !is_mounted(target)? {
        return Ok(());
    }
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(sys_err("detaching overlay at", target)),
        Err(e) => Err(sys_err("unmounting overlay at", target)(e)),
    }
}

/// Replaces `upper` and `work` with empty folders, so a restarted container starts from the
/// image again. Call only while the overlay is not mounted.
pub fn reset_upper(upper: &Path, work: &Path) -> Result<(), RootfsError> {
    for dir in [upper, work] {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", dir)(e)),
        }
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    Ok(())
}

/// Whether `path` is a mount point of this mount namespace (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> Result<bool, RootfsError> {
    let path = fs::canonicalize(path).map_err(io_err("resolving", path))?;
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).map_err(io_err("reading", info))?;
    let want = escape_mountinfo(&path.to_string_lossy());
    Ok(text
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str())))
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
pub(crate) fn escape_mountinfo(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_the_top_layer_first_and_respect_the_page_size() {
        let layers = [PathBuf::from("/l/bottom"), PathBuf::from("/l/top")];
        let opts = overlay_options(&layers, Path::new("/u"), Path::new("/w"), Path::new("/t"))
            .expect("options");
        assert_eq!(opts, "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w");
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/layers/{i:040}")))
            .collect();
        let err = overlay_options(&many, Path::new("/u"), Path::new("/w"), Path::new("/t"))
            .expect_err("too long");
        assert!(err.to_string().contains("200 layers"), "{err}");
        let bad = [PathBuf::from("/l/a:b")];
        assert!(overlay_options(&bad, Path::new("/u"), Path::new("/w"), Path::new("/t")).is_err());
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w"), Path::new("/t")).is_err());
    }

    #[test]
    fn overlay_merges_layers_and_honours_whiteouts() {
        if !crate::testing::require_root("overlay_merges_layers_and_honours_whiteouts") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = |p: &str| dir.path().join(p);
        let (bottom, top) = (d("bottom"), d("top"));
        fs::create_dir_all(&bottom).expect("bottom");
        fs::create_dir_all(&top).expect("top");
        fs::write(bottom.join("a"), "bottom-a").expect("a");
        fs::write(bottom.join("gone"), "x").expect("gone");
        fs::write(top.join("a"), "top-a").expect("a");
        fs::write(top.join("b"), "top-b").expect("b");
        let kind = nix::sys::stat::SFlag::S_IFCHR;
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o000);
        nix::sys::stat::mknod(&top.join("gone"), kind, mode, 0).expect("whiteout");

        let (upper, work, target) = (d("c/upper"), d("c/work"), d("c/rootfs"));
        let layers = [bottom, top];
        mount_overlay(&layers, &upper, &work, &target).expect("mount");
        mount_overlay(&layers, &upper, &work, &target).expect("mount is idempotent");
        assert!(is_mounted(&target).expect("mountinfo"));
        assert_eq!(fs::read_to_string(target.join("a")).expect("a"), "top-a");
        assert_eq!(fs::read_to_string(target.join("b")).expect("b"), "top-b");
        assert!(!target.join("gone").exists());
        fs::write(target.join("new"), "n").expect("write");
        assert!(upper.join("new").exists());

        unmount(&target).expect("unmount");
        assert!(!is_mounted(&target).expect("mountinfo"));
        unmount(&target).expect("unmount twice");
        reset_upper(&upper, &work).expect("reset");
        assert!(!upper.join("new").exists() && upper.is_dir());
    }

    #[test]
    fn etc_targets_that_are_links_or_fifos_become_plain_files() {
        use std::os::unix::fs::{FileTypeExt, symlink};
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, host) = (dir.path().join("rootfs"), dir.path().join("host-file"));
        let etc = root.join("etc");
        fs::create_dir_all(&etc).expect("etc");
        fs::write(&host, "host").expect("host file");
        symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            etc.join("resolv.conf"),
        )
        .expect("ln");
        symlink(&host, etc.join("hostname")).expect("ln");
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&etc.join("hosts"), mode).expect("fifo");
        prepare_etc_targets(&root).expect("prepare");
        for name in ["resolv.conf", "hostname", "hosts"] {
            let m = fs::symlink_metadata(etc.join(name)).expect(name);
            assert!(m.is_file() && m.len() == 0, "{name}: {:?}", m.file_type());
        }
        assert_eq!(fs::read_to_string(&host).expect("host"), "host");
        assert!(
            !root.join("run").exists(),
            "nothing created through the link"
        );

        // Plain files and folders stay; a missing file is left to the runtime.
        fs::write(etc.join("hosts"), "image hosts").expect("hosts");
        fs::remove_file(etc.join("hostname")).expect("rm");
        fs::remove_file(etc.join("resolv.conf")).expect("rm");
        fs::create_dir(etc.join("resolv.conf")).expect("dir");
        prepare_etc_targets(&root).expect("prepare again");
        assert_eq!(
            fs::read_to_string(etc.join("hosts")).expect("hosts"),
            "image hosts"
        );
        assert!(!etc.join("hostname").exists());
        assert!(etc.join("resolv.conf").is_dir());
        assert!(
            !fs::symlink_metadata(etc.join("hosts"))
                .expect("hosts")
                .file_type()
                .is_fifo()
        );
        // `/etc` itself a symlink to a host folder: resolved inside the rootfs.
        let outside = dir.path().join("outside-etc");
        fs::create_dir(&outside).expect("outside");
        symlink(&host, outside.join("hosts")).expect("ln");
        fs::remove_dir_all(&etc).expect("rm etc");
        symlink(&outside, &etc).expect("ln etc");
        prepare_etc_targets(&root).expect("prepare through etc link");
        assert!(
            fs::symlink_metadata(outside.join("hosts"))
                .expect("kept")
                .is_symlink()
        );
    }

    #[test]
    fn resetting_the_upper_layer_never_follows_its_symlinks() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("tempdir");
        let (upper, work, outside) = (
            dir.path().join("u"),
            dir.path().join("w"),
            dir.path().join("o"),
        );
        fs::create_dir_all(upper.join("data")).expect("upper");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(outside.join("keep"), "k").expect("keep");
        // What a container can write into its upper layer.
        symlink(&outside, upper.join("link")).expect("ln");
        symlink(&outside, upper.join("data/link")).expect("ln");
        reset_upper(&upper, &work).expect("reset");
        assert_eq!(fs::read_dir(&upper).expect("upper").count(), 0);
        assert_eq!(fs::read_to_string(outside.join("keep")).expect("kept"), "k");
    }
}
