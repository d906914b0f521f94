//! Helpers for the end-to-end tests: locating binaries, building OCI layouts, running
//! real agents on private state folders and cgroup parents.

pub mod agent;
pub mod browser;
pub mod grafana;
pub mod hub;
pub mod oci;
pub mod prom_text;
pub mod registry;
pub mod tmpfs;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Folder holding the workspace's built binaries (`DROVER_BIN_DIR`, else `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DROVER_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// Path of a workspace binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace` first (or set DROVER_BIN_DIR)",
        p.display()
    );
    p
}

pub use drover_agent::testing::require_root;

/// True while host process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A short random suffix for names that must not collide between parallel tests.
pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    format!("{prefix}-{}", hex::encode(b))
}
