//! `drover-agent logs`: a container's stdout/stderr from its rotated log files (read
//! through `commands::log_read`, which the hub's `logs` command uses too).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use drover_protocol::Name;

use super::load_config;
use crate::commands::log_read::Snapshot;
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
    let snap = Snapshot::open(&file).map_err(|e| format!("no log for {wl}/{c} yet ({e})"))?;
    let tail = tail.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let mut pos = match tail {
        Some(n) => snap.tail_start(n, 0).map_err(|e| e.to_string())?,
        None => 0,
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = snap.read_at(pos, &mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if out.write_all(&buf[..n]).is_err() {
            return Ok(()); // reader went away (e.g. `| head`)
        }
        pos += n as u64;
    }
    let _ = out.flush();
    if follow {
        let mut f = snap.follow();
        loop {
            match f
                .poll(&mut buf)
                .map_err(|e| format!("{}: {e}", file.display()))?
            {
                0 => std::thread::sleep(Duration::from_millis(200)),
                n => {
                    if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
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
