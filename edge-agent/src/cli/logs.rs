//! `drover-agent logs`: a container's stdout/stderr from its rotated log files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_protocol::Name;

use super::load_config;
use crate::state::{self, StatePaths};

/// Prints the log (older rotated file first); with `follow`, keeps printing new output.
pub fn logs(
    config: &Path,
    workload: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> u8 {
    match try_logs(config, workload, container, follow, tail) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            1
        }
    }
}

fn try_logs(
    config: &Path,
    workload: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), String> {
    let cfg = load_config(config)?;
    let paths = StatePaths::of(&cfg);
    let wl = Name::new(workload).map_err(|e| format!("workload: {e}"))?;
    let c = match container {
        Some(c) => Name::new(c).map_err(|e| format!("container: {e}"))?,
        None => only_container(&paths, &wl)?,
    };
    let file = paths.log_file(&wl, &c);
    if !file.exists() {
        return Err(format!(
            "no log for {wl}/{c} yet ({} does not exist)",
            file.display()
        ));
    }
    let mut text = Vec::new();
    for f in rotated(&file).into_iter().rev().chain([file.clone()]) {
        if let Ok(mut h) = File::open(&f) {
            h.read_to_end(&mut text)
                .map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = out.write_all(last_lines(&text, tail));
    let _ = out.flush();
    if follow {
        follow_file(&file, &mut out)?;
    }
    Ok(())
}

/// The rotated files of `file` that exist: `FILE.1`, `FILE.2`, … (newest first).
fn rotated(file: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|i| {
            let mut s = file.as_os_str().to_owned();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        })
        .take_while(|p| p.exists())
        .collect()
}

/// The container name when the workload has exactly one.
fn only_container(paths: &StatePaths, wl: &Name) -> Result<Name, String> {
    let report = state::load_report(paths)
        .map_err(|e| format!("cannot tell the containers of {wl}: {e}"))?;
    let w = report
        .status
        .workloads
        .iter()
        .find(|w| &w.name == wl)
        .ok_or_else(|| format!("no workload named {wl}"))?;
    match w.containers.as_slice() {
        [one] => Ok(one.name.clone()),
        many => {
            let names: Vec<&str> = many.iter().map(|c| c.name.as_str()).collect();
            Err(format!(
                "workload {wl} has containers {}: pick one with --container",
                names.join(", ")
            ))
        }
    }
}

fn last_lines(text: &[u8], tail: Option<usize>) -> &[u8] {
    let Some(n) = tail else { return text };
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if n == 0 {
        &text[text.len()..]
    } else {
        &text[start..]
    }
}

/// Prints what is appended to `file`, reopening it when the shim rotates it.
fn follow_file(file: &Path, out: &mut impl Write) -> Result<(), String> {
    let mut h = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut pos = h.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let mut ino = h.metadata().map(|m| m.ino()).unwrap_or(0);
    let mut buf = [0u8; 8192];
    loop {
        match h.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(200));
                let now = std::fs::metadata(file).ok();
                if now
                    .as_ref()
                    .is_some_and(|m| m.ino() != ino || m.len() < pos)
                    && let Ok(nh) = File::open(file)
                {
                    h = nh;
                    pos = 0;
                    ino = now.map(|m| m.ino()).unwrap_or(0);
                }
            }
            Ok(n) => {
                pos += n as u64;
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    return Ok(()); // reader went away (e.g. `| head`)
                }
            }
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn tail_keeps_the_last_lines() {
        let t = b"a\nb\nc\n";
        assert_eq!(last_lines(t, None), t);
        assert_eq!(last_lines(t, Some(2)), b"b\nc\n");
        assert_eq!(last_lines(t, Some(9)), t);
        assert_eq!(last_lines(t, Some(0)), b"");
        assert_eq!(last_lines(b"a\nb", Some(1)), b"b");
    }
}
