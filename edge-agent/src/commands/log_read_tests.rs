use super::*;
use crate::shim::RotatingLog;

fn read_from(s: &Snapshot, mut pos: u64) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 7]; // small on purpose: reads cross file boundaries
    loop {
        let n = s.read_at(pos, &mut buf).unwrap();
        if n == 0 {
            return String::from_utf8(out).unwrap();
        }
        out.extend_from_slice(&buf[..n]);
        pos += n as u64;
    }
}

/// A log of `lines` numbered lines rotated every ~30 bytes into 4 files.
fn rotated_log(dir: &Path, lines: u32) -> PathBuf {
    let p = dir.join("c.log");
    let mut log = RotatingLog::open(&p, 30, 4).unwrap();
    for i in 0..lines {
        log.write(format!("line {i}\n").as_bytes()).unwrap();
    }
    p
}

#[test]
fn a_snapshot_reads_the_rotated_files_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let p = rotated_log(dir.path(), 20);
    assert_eq!(log_files(&p).len(), 4);
    let s = Snapshot::open(&p).unwrap();
    let text = read_from(&s, 0);
    // 4 files of at most 30 bytes: the oldest lines are gone, the rest in order.
    assert!(text.ends_with("line 18\nline 19\n"), "{text}");
    assert!(!text.starts_with("line 0\n"), "{text}");
    let nums: Vec<u32> = text
        .lines()
        .map(|l| l[5..].parse().unwrap())
        .collect::<Vec<_>>();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
}

#[test]
fn tail_counts_lines_backwards_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = rotated_log(dir.path(), 12);
    let s = Snapshot::open(&p).unwrap();
    let tail = |n| read_from(&s, s.tail_start(n, 0).unwrap());
    assert_eq!(tail(1), "line 11\n");
    assert_eq!(tail(5), "line 7\nline 8\nline 9\nline 10\nline 11\n");
    assert_eq!(tail(0), "");
    assert_eq!(tail(1000), read_from(&s, 0));
}

#[test]
fn tail_takes_an_unfinished_last_line_as_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    fs::write(&p, "a\nb\nc").unwrap();
    let s = Snapshot::open(&p).unwrap();
    assert_eq!(read_from(&s, s.tail_start(2, 0).unwrap()), "b\nc");
    // Only within what `since` left.
    assert_eq!(read_from(&s, s.tail_start(9, 2).unwrap()), "b\nc");
}

#[test]
fn since_starts_at_the_last_index_entry_before_it() {
    let entries = [(0, 1_000), (40, 3_000), (90, 6_000)];
    assert_eq!(index_start(&entries, 500), 0);
    assert_eq!(index_start(&entries, 1_000), 0);
    assert_eq!(index_start(&entries, 3_500), 40);
    assert_eq!(index_start(&entries, 9_000), 90);
    assert_eq!(index_start(&[], 9_000), 0);
}

#[test]
fn since_skips_files_last_written_before_it_and_uses_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    fs::write(dir.path().join("c.log.1"), "old 1\nold 2\n").unwrap();
    fs::write(&p, "a\nb\nc\nd\n").unwrap();
    let mut idx = Vec::new();
    for (off, at) in [(0u64, 1_000u64), (4, 5_000)] {
        idx.extend_from_slice(&off.to_le_bytes());
        idx.extend_from_slice(&at.to_le_bytes());
    }
    fs::write(index_path(&p), idx).unwrap();
    let old = File::options()
        .write(true)
        .open(dir.path().join("c.log.1"))
        .unwrap();
    old.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(1))
        .unwrap();
    let s = Snapshot::open(&p).unwrap();
    let now_ms = crate::fsutil::now_ms();
    assert_eq!(read_from(&s, s.since_start(6_000)), "c\nd\n");
    assert_eq!(read_from(&s, s.since_start(2_000)), "a\nb\nc\nd\n");
    // Older than the file's last write: nothing.
    assert_eq!(read_from(&s, s.since_start(now_ms + 60_000)), "");
    // A stale index (offsets beyond the file) is ignored: the whole file.
    fs::write(index_path(&p), [0xffu8; 16]).unwrap();
    let s = Snapshot::open(&p).unwrap();
    assert_eq!(read_from(&s, s.since_start(6_000)), "a\nb\nc\nd\n");
}

#[test]
fn a_follower_reads_appends_and_follows_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    let mut log = RotatingLog::open(&p, 20, 3).unwrap();
    log.write(b"before\n").unwrap();
    let mut f = Snapshot::open(&p).unwrap().follow();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let mut drain = |f: &mut Follower, got: &mut Vec<u8>| {
        for _ in 0..4 {
            let n = f.poll(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    };
    drain(&mut f, &mut got);
    assert!(got.is_empty());
    log.write(b"one\ntwo\n").unwrap();
    log.write(b"three-rotates\n").unwrap(); // 7+8+14 > 20: FILE → FILE.1
    log.write(b"four\n").unwrap();
    drain(&mut f, &mut got);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "one\ntwo\nthree-rotates\nfour\n"
    );
}

#[test]
fn opening_a_missing_log_says_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let e = Snapshot::open(&dir.path().join("nope.log")).err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}
