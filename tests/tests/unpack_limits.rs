//! End-to-end: a layer that is a decompression bomb (1 GiB of zeros in 1 MiB files,
//! about 1 MiB of gzip) is refused by a real agent after at most `images.max_layer_bytes` was written:
//! the workload's status names the layer and the limit, the partial layer is deleted,
//! the disk (a small tmpfs: without the limit the layer would fill it) never holds more
//! than the limit plus slack, and what was running keeps running. The agent's state
//! folder, opened to others beforehand, is tightened to 0700 and its records are 0600.
//! Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use drover_tests::agent::{TestAgent, workload_yaml};
use drover_tests::tmpfs::Tmpfs;
use drover_tests::{oci, pid_alive, require_root, wait_for};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const LIMIT: u64 = 16 << 20;
const BOMB: u64 = 1 << 30;

/// An OCI layout whose only layer is a tar of `BOMB` zeros in 1 MiB files (each within
/// the limit, so the agent writes until the layer as a whole goes beyond it), gzipped
/// while streaming (never held uncompressed). The diff_id is not the tar's (hashing
/// 1 GiB in a test is slow): the limit must refuse the layer before any digest check.
fn bomb_layout(dir: &Path) -> u64 {
    oci::init_layout(dir).unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let chunk = vec![0u8; 1 << 20];
    for i in 0..(BOMB >> 20) {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("z{i:04}")).unwrap();
        h.set_size(chunk.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        gz.write_all(h.as_bytes()).unwrap();
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap(); // end-of-archive blocks
    let blob = gz.finish().unwrap();
    let gz_len = blob.len() as u64;
    let layer = oci::write_blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &blob).unwrap();
    let config = json!({
        "architecture": oci::host_arch(),
        "os": "linux",
        "config": { "Cmd": ["/zeros"] },
        "rootfs": { "type": "layers", "diff_ids": [oci::sha256_digest(b"not the tar")] },
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config = oci::write_blob(dir, "application/vnd.oci.image.config.v1+json", &config).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let desc = oci::write_blob(dir, "application/vnd.oci.image.manifest.v1+json", &manifest);
    oci::add_to_index(dir, "latest", desc.unwrap()).unwrap();
    gz_len
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_gzip_bomb_layer_is_refused_at_the_limit_and_nothing_else_is_disturbed() {
    if !require_root("a_gzip_bomb_layer_is_refused_at_the_limit_and_nothing_else_is_disturbed") {
        return;
    }
    let mut a = TestAgent::new("unpack-limits");
    let busybox = a.dir.path().join("busybox");
    oci::busybox_layout(&busybox, "latest").unwrap();
    let bomb = a.dir.path().join("bomb");
    let gz_len = bomb_layout(&bomb);
    assert!(gz_len < 4 << 20, "the bomb is small: {gz_len} bytes");
    a.append_config(&format!(
        "[images]\nmin_free_disk = \"1Mi\"\nmax_layer_bytes = \"{}Mi\"\n",
        LIMIT >> 20
    ));
    // 128 MiB: far below what the layer expands to, so without the limit it would fill.
    let disk = Tmpfs::mount(&a.state, "128m");
    fs::set_permissions(&a.state, fs::Permissions::from_mode(0o755)).unwrap();
    a.start();
    let sleeper = "echo up; while true; do sleep 1; done";
    a.write_manifest(
        "keep.yaml",
        &workload_yaml("keep", &busybox, sleeper, "", "memory: 32Mi"),
    );
    let pid = a.wait_running("keep", "main", T);
    assert_eq!(mode(&a.state), 0o700, "the state folder was tightened");
    assert!(
        a.logs().contains("tightened"),
        "and the log says so:\n{}",
        a.logs()
    );
    let record = a.state.join("workloads/keep.json");
    assert_eq!(mode(&record), 0o600, "{}", record.display());
    // The bundles (config.json holds the env values) are below 0700 runtime folders.
    for d in ["containers", "runtime"] {
        let dir = a.run_dir().join(d);
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }

    // Watch the disk while the bomb is pulled.
    let before = disk.free_bytes();
    let lowest = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let watch = {
        let (lowest, done, disk) = (Arc::clone(&lowest), Arc::clone(&done), &disk);
        let free = move || disk.free_bytes();
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                // Bounded: if waiting for the error panics, nobody sets `done`.
                let start = std::time::Instant::now();
                while !done.load(Ordering::Relaxed) && start.elapsed() < T + T {
                    lowest.fetch_min(free(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            a.write_manifest(
                "bomb.yaml",
                &workload_yaml("bomb", &bomb, "true", "", "memory: 32Mi"),
            );
            let expected = format!("expands beyond {LIMIT} bytes (images.max_layer_bytes)");
            let ps = a.wait_ps("the bomb's error", T, |ps| {
                drover_tests::agent::last_error(ps, "bomb").contains(&expected)
            });
            done.store(true, Ordering::Relaxed);
            h.join().unwrap();
            ps
        })
    };
    let err = drover_tests::agent::last_error(&watch, "bomb");
    assert!(
        err.contains("image oci:") && err.contains("layer sha256:"),
        "{err}"
    );
    let used = before - lowest.load(Ordering::Relaxed);
    eprintln!("disk use during the pull: {used} bytes at most (limit {LIMIT})");
    let slack = 8 << 20;
    assert!(
        used > LIMIT / 2 && used <= LIMIT + slack,
        "the disk held {used} bytes more during the pull (limit {LIMIT} + {slack} slack)"
    );

    let layers = a.state.join("images/layers/sha256");
    wait_for("the partial layer is removed", T, || {
        let names: Vec<String> = fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (!names.iter().any(|n| n.starts_with(".tmp-"))).then_some(())
    });
    assert!(before - disk.free_bytes() < slack, "the space came back");
    assert_eq!(
        a.running_pid("keep", "main"),
        Some(pid),
        "keep was not disturbed"
    );
    assert!(pid_alive(a.pid().unwrap()), "the agent is alive");

    a.remove_manifest("bomb.yaml");
    a.remove_manifest("keep.yaml");
    wait_for("keep removed", T, || {
        (!a.state.join("workloads/keep.json").exists()).then_some(())
    });
    a.stop();
}
