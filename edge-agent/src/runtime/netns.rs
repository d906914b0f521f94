//! Persistent network namespaces for `NetworkMode::None` workloads: a private namespace with
//! only `lo` (up), pinned by a bind mount on a file (like `ip netns add`) so that all the
//! workload's containers can join it by path and it outlives their restarts.
//!
//! The agent is multi-threaded: namespaces are switched only in a short-lived thread of our
//! own (`unshare(CLONE_NEWNET)` affects the calling thread only), never in the caller's.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockType};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: {what}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("network namespace {path}: {what}: {source}")]
    Sys {
        what: &'static str,
        path: PathBuf,
        source: Errno,
    },
    #[error("network namespace {0}: the helper thread panicked")]
    Thread(PathBuf),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NetnsError {
    let path = path.to_path_buf();
    move |source| NetnsError::Io { what, path, source }
}

fn sys_err(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> NetnsError {
    let path = path.to_path_buf();
    move |source| NetnsError::Sys { what, path, source }
}

/// Creates a new network namespace with `lo` up and pins it on `path`. Does nothing when
/// `path` already holds a namespace.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    if is_netns(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating its folder", dir))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("creating the mount point file", path))?;
    let target = path.to_path_buf();
    let result = std::thread::Builder::new()
        .name("drover-netns".to_string())
        .spawn(move || pin_new_netns(&target))
        .map_err(io_err("spawning the helper thread", path))?
        .join()
        .map_err(|_| NetnsError::Thread(path.to_path_buf()))?;
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Runs in a throw-away thread: the thread's own network namespace changes, nobody else's.
fn pin_new_netns(path: &Path) -> Result<(), NetnsError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys_err("unshare", path))?;
    loopback_up().map_err(sys_err("bringing lo up", path))?;
    let tid = nix::unistd::gettid();
    let own = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
    nix::mount::mount(
        Some(&own),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys_err("bind-mounting", path))
}

/// `ip link set lo up` in the calling thread's network namespace.
fn loopback_up() -> Result<(), Errno> {
    let sock: OwnedFd = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = ifreq_lo();
    // SAFETY: `req` is a valid, initialised ifreq that outlives both calls; the kernel only
    // reads the name and reads/writes `ifru_flags`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    Errno::result(rc)?;
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) };
    Errno::result(rc).map(drop)
}

fn ifreq_lo() -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req
}

/// Whether `path` currently pins a namespace (an nsfs bind mount).
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Unpins and deletes the namespace file. A missing or unmounted file is fine; the
/// namespace itself disappears once no process is in it any more.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    while is_netns(path) {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(sys_err("unmounting", path)(e)),
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// `lo`'s flags as seen from inside the namespace pinned at `path`.
    fn lo_flags_inside(path: &Path) -> libc::c_short {
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let file = fs::File::open(&path).expect("open netns");
            nix::sched::setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
            let sock = nix::sys::socket::socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .expect("socket");
            let mut req = ifreq_lo();
            // SAFETY: valid ifreq, see loopback_up.
            let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
            Errno::result(rc).expect("SIOCGIFFLAGS");
            // SAFETY: filled by SIOCGIFFLAGS.
            unsafe { req.ifr_ifru.ifru_flags }
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn create_pins_a_private_netns_with_lo_up() {
        if !crate::testing::require_root("create_pins_a_private_netns_with_lo_up") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("netns/web");
        create(&path).expect("create");
        assert!(is_netns(&path));
        create(&path).expect("create is idempotent");
        let ours = fs::metadata("/proc/self/ns/net").expect("own ns").ino();
        assert_ne!(fs::metadata(&path).expect("pinned ns").ino(), ours);
        assert_ne!(lo_flags_inside(&path) & libc::IFF_UP as libc::c_short, 0);

        remove(&path).expect("remove");
        assert!(!path.exists());
        remove(&path).expect("remove twice");
    }
}
