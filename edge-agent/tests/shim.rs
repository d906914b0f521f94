//! Runs real containers through `drover-agent shim run` (needs root, cgroups and
//! /bin/busybox from Debian's busybox-static). Skipped when not root.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_agent::shim::status::{ShimState, ShimStatus};
use oci_spec::runtime::{LinuxMemoryBuilder, Spec};

const BUSYBOX_APPLETS: &[&str] = &["sh", "echo", "sleep", "dd", "cat", "grep", "true"];

struct Fixture {
    tmp: tempfile::TempDir,
    id: String,
    cgroup_parent: String,
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}{:x}", std::process::id(), nanos)
}

impl Fixture {
    /// A container folder with `bundle/config.json` and a busybox `rootfs/`.
    fn new(args: &[&str], memory_limit: Option<i64>) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let u = unique();
        let fx = Fixture {
            tmp,
            id: format!("shimtest{u}.main"),
            cgroup_parent: format!("drover-shimtest-{u}"),
        };
        let rootfs = fx.dir().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in BUSYBOX_APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let mut spec = Spec::default();
        let mut root = spec.root().clone().unwrap();
        root.set_path(rootfs.clone());
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_terminal(Some(false));
        process.set_env(Some(vec!["PATH=/bin".into()]));
        spec.set_process(Some(process));
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some(PathBuf::from(format!(
            "/{}/wl/main",
            fx.cgroup_parent
        ))));
        if let Some(limit) = memory_limit {
            let mut res = linux.resources().clone().unwrap_or_default();
            res.set_memory(Some(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(limit)
                    .build()
                    .unwrap(),
            ));
            linux.set_resources(Some(res));
        }
        spec.set_linux(Some(linux));
        std::fs::create_dir_all(fx.dir().join("bundle")).unwrap();
        spec.save(fx.dir().join("bundle/config.json")).unwrap();
        fx
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("container")
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("runtime")
    }
    fn log(&self) -> PathBuf {
        self.tmp.path().join("logs/wl/main.log")
    }
    fn notify(&self) -> PathBuf {
        self.tmp.path().join("agent.sock")
    }

    /// Spawns the shim; returns the report line and the time it took to arrive.
    fn spawn(&self, grace_ms: u64) -> (String, Duration) {
        let t0 = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover-agent"))
            .args(["shim", "run", "--id", &self.id])
            .arg("--dir")
            .arg(self.dir())
            .arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.log())
            .args(["--stop-grace-ms", &grace_ms.to_string()])
            .arg("--notify")
            .arg(self.notify())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let took = t0.elapsed();
        assert!(
            child.wait().unwrap().success(),
            "the first shim process exits 0 at once"
        );
        (line, took)
    }

    fn status(&self) -> Option<ShimStatus> {
        ShimStatus::read(&self.dir())
    }

    fn wait_state(&self, state: ShimState, within: Duration) -> ShimStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(s) = self.status().filter(|s| s.state == state) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "no {state:?} within {within:?}: {:?}\nshim.log:\n{}",
                self.status(),
                self.shim_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("shim.log")).unwrap_or_default()
    }

    fn cgroup_leaf_exists(&self) -> bool {
        Path::new("/sys/fs/cgroup/memory")
            .join(&self.cgroup_parent)
            .join("wl/main")
            .exists()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_drover-agent"))
            .args(["shim", "delete", "--id", &self.id])
            .arg("--root")
            .arg(self.root())
            .status();
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_cgroup_tree(&ctrl.path().join(&self.cgroup_parent));
        }
    }
}

/// cgroupfs folders can only be removed with rmdir, children first.
fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn private_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// A signal mask line of /proc/PID/status (`SigBlk:\t0000…`) from the container's log.
fn sig_mask(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("mask line in the log");
    u64::from_str_radix(line.trim(), 16).unwrap()
}

fn running_pid(report: &str) -> u32 {
    let pid = report
        .strip_prefix("running ")
        .unwrap_or_else(|| panic!("unexpected report {report:?}"));
    pid.trim().parse().unwrap()
}

#[test]
fn runs_to_completion_logs_output_and_notifies() {
    if !drover_agent::testing::require_root("runs_to_completion_logs_output_and_notifies") {
        return;
    }
    let fx = Fixture::new(
        &[
            "sh",
            "-c",
            "echo hello from the container; echo oops >&2; grep -E '^Sig(Blk|Ign)' /proc/self/status; exit 3",
        ],
        None,
    );
    let sock = UnixDatagram::bind(fx.notify()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (report, took) = fx.spawn(10_000);
    let pid = running_pid(&report);
    eprintln!("spawn → report line: {took:?}");
    let st = fx.wait_state(ShimState::Exited, Duration::from_secs(10));
    assert_eq!(st.pid, Some(pid), "status was Running with this pid before");
    assert!(st.started_at_ms.is_some() && st.finished_at_ms >= st.started_at_ms);
    assert_eq!(
        (st.exit_code, st.signal, st.oom_killed),
        (Some(3), None, false)
    );
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], format!("exited {}", fx.id).as_bytes());
    let log = std::fs::read_to_string(fx.log()).unwrap();
    assert!(
        log.contains("hello from the container\n") && log.contains("oops\n"),
        "log: {log:?}"
    );
    // The shim's blocked signals and ignored SIGPIPE must not leak into the container.
    assert_eq!(sig_mask(&log, "SigBlk:"), 0, "log: {log:?}");
    let shim_signals = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGPIPE,
        libc::SIGTERM,
        libc::SIGCHLD,
    ];
    let leaked = shim_signals
        .iter()
        .filter(|&&s| sig_mask(&log, "SigIgn:") & (1 << (s - 1)) != 0)
        .count();
    assert_eq!(leaked, 0, "log: {log:?}");
    assert!(
        !fx.root().join(&fx.id).exists(),
        "libcontainer state deleted"
    );
    assert!(!fx.cgroup_leaf_exists(), "container cgroup deleted");
}

#[test]
fn sigterm_stops_the_container_within_the_grace_period() {
    if !drover_agent::testing::require_root("sigterm_stops_the_container_within_the_grace_period") {
        return;
    }
    // busybox sleep as PID 1 ignores SIGTERM: this needs the SIGKILL after the grace.
    let fx = Fixture::new(&["sleep", "1000"], None);
    let (report, took) = fx.spawn(1_000);
    let pid = running_pid(&report);
    let st = fx.wait_state(ShimState::Running, Duration::from_secs(5));
    assert_eq!(st.pid, Some(pid));
    assert!(st.pid_start_ticks.is_some());
    std::thread::sleep(Duration::from_millis(300));
    eprintln!(
        "spawn → report line: {took:?}; shim private memory: {} KiB",
        private_kib(st.shim_pid)
    );
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(st.shim_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = fx.wait_state(ShimState::Exited, Duration::from_secs(5));
    let stopped = t0.elapsed();
    eprintln!("stopped in {stopped:?} (grace 1 s)");
    assert!(
        stopped >= Duration::from_millis(900) && stopped < Duration::from_millis(2500),
        "{stopped:?}"
    );
    assert_eq!(
        (st.exit_code, st.signal, st.oom_killed),
        (Some(137), Some(9), false)
    );
    assert!(!fx.cgroup_leaf_exists());
}

#[test]
fn sigterm_reaches_an_init_that_handles_it() {
    if !drover_agent::testing::require_root("sigterm_reaches_an_init_that_handles_it") {
        return;
    }
    let fx = Fixture::new(
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ],
        None,
    );
    let (report, _) = fx.spawn(10_000);
    running_pid(&report);
    let st = fx.wait_state(ShimState::Running, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(st.shim_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = fx.wait_state(ShimState::Exited, Duration::from_secs(5));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "exited on SIGTERM, not after the grace"
    );
    assert_eq!((st.exit_code, st.signal), (Some(0), None));
    let log = std::fs::read_to_string(fx.log()).unwrap();
    assert!(
        log.contains("ready\n") && log.contains("bye\n"),
        "log: {log:?}"
    );
}

#[test]
fn memory_limit_overrun_is_reported_as_oom_kill() {
    if !drover_agent::testing::require_root("memory_limit_overrun_is_reported_as_oom_kill") {
        return;
    }
    // dd reads 64 MiB from /dev/zero into one buffer: every page gets touched.
    let fx = Fixture::new(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        Some(16 << 20),
    );
    let (report, _) = fx.spawn(10_000);
    running_pid(&report);
    let st = fx.wait_state(ShimState::Exited, Duration::from_secs(10));
    assert_eq!(
        (st.exit_code, st.signal, st.oom_killed),
        (Some(137), Some(9), true),
        "{}",
        fx.shim_log()
    );
    assert!(!fx.cgroup_leaf_exists());
}

#[test]
fn a_container_that_cannot_start_is_reported_failed() {
    if !drover_agent::testing::require_root("a_container_that_cannot_start_is_reported_failed") {
        return;
    }
    let fx = Fixture::new(&["/bin/no-such-program"], None);
    let (report, _) = fx.spawn(10_000);
    assert!(report.starts_with("failed "), "report: {report:?}");
    eprintln!("report of a failed start: {report:?}");
    let st = fx.wait_state(ShimState::Failed, Duration::from_secs(5));
    assert!(st.error.is_some());
    assert!(
        !fx.root().join(&fx.id).exists(),
        "nothing left in the libcontainer root"
    );
}

#[test]
fn delete_of_an_unknown_container_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_drover-agent"))
        .args(["shim", "delete", "--id", "nothing.here", "--root"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some(s) if s != "Z")
}

fn wait_dead(pid: u32, within: Duration) -> bool {
    let end = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Simulates a power cut of the shim alone: SIGKILL, the container keeps running.
fn kill_shim(fx: &Fixture) -> u32 {
    let st = fx.wait_state(ShimState::Running, Duration::from_secs(5));
    let shim = nix::unistd::Pid::from_raw(st.shim_pid as i32);
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_dead(st.shim_pid, Duration::from_secs(2)));
    let init = st.pid.unwrap();
    assert!(alive(init), "the container outlives its shim");
    init
}

#[test]
fn shim_delete_cleans_up_after_a_dead_shim() {
    if !drover_agent::testing::require_root("shim_delete_cleans_up_after_a_dead_shim") {
        return;
    }
    let fx = Fixture::new(&["sleep", "1000"], None);
    running_pid(&fx.spawn(10_000).0);
    let init = kill_shim(&fx);
    let status = Command::new(env!("CARGO_BIN_EXE_drover-agent"))
        .args(["shim", "delete", "--id", &fx.id, "--root"])
        .arg(fx.root())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_dead(init, Duration::from_secs(2)),
        "container init killed"
    );
    assert!(!fx.root().join(&fx.id).exists());
    assert!(!fx.cgroup_leaf_exists());
}

#[test]
fn a_stale_container_with_the_same_id_is_replaced() {
    if !drover_agent::testing::require_root("a_stale_container_with_the_same_id_is_replaced") {
        return;
    }
    let fx = Fixture::new(&["sleep", "1000"], None);
    running_pid(&fx.spawn(10_000).0);
    let old = kill_shim(&fx);
    let new = running_pid(&fx.spawn(500).0);
    assert_ne!(old, new);
    assert!(
        wait_dead(old, Duration::from_secs(2)),
        "the stale container was killed"
    );
    let st = fx.wait_state(ShimState::Running, Duration::from_secs(5));
    assert_eq!(st.pid, Some(new));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(st.shim_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    fx.wait_state(ShimState::Exited, Duration::from_secs(5));
}
