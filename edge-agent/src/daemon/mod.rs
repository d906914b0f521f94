//! The agent daemon: the thin async shell around the pure planner.
//!
//! It waits for something to happen (a manifest changed, a shim reported an exit, a
//! back-off or stop deadline came, the periodic resync), then runs one reconcile pass on
//! a blocking thread: observe, `plan`, apply, report. A pass never waits for a process,
//! so hub events, status and signals keep flowing during a long stop. It never decides
//! anything itself.

mod actions;
mod agent;
mod disk_pressure;
mod files;
mod images;
mod manifests;
mod observe;
mod pass;
mod report;
mod restart;
mod revisions;
mod telemetry_targets;
#[cfg(test)]
mod tests;

use tokio::net::UnixDatagram;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

pub use actions::StartError;
pub use agent::{Agent, DaemonError, Ports};
pub use report::{ReportDecision, decide, report_key};

use crate::commands::Commands;
use crate::hub_link::{self, HubEvent, HubHandle};
use crate::telemetry::{self, TelemetryHandle};

/// Runs the agent until SIGTERM or SIGINT. Containers keep running after it exits.
pub fn run(agent: Agent) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Io {
            context: "starting the async runtime".into(),
            source: e,
        })?;
    rt.block_on(event_loop(agent))
}

async fn event_loop(mut agent: Agent) -> Result<(), DaemonError> {
    let sock_path = agent.paths.agent_sock();
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).map_err(|e| DaemonError::Io {
        context: format!("binding {}", sock_path.display()),
        source: e,
    })?;
    let mut watcher = manifests::Watcher::new(agent.manifests_dir());
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::signal)?;
    let (hub_tx, mut hub_rx) = tokio::sync::mpsc::channel::<HubEvent>(8);
    let link = match &agent.cfg.hub {
        Some(h) => Some(
            hub_link::spawn_with_telemetry_queue(
                h,
                agent.cfg.telemetry.queue,
                &agent.cfg.device,
                agent.hub_generation(),
                link_epoch(&agent.cfg.state_dir),
                hub_tx.clone(),
            )
            .map_err(DaemonError::hub)?,
        ),
        None => None,
    };
    let telemetry = link.as_ref().and_then(|l| start_telemetry(&agent, l));
    let mut commands = match (&link, &agent.cfg.hub) {
        (Some(l), Some(h)) => {
            Some(Commands::new(h, &agent.paths, l.responder()).map_err(DaemonError::hub)?)
        }
        _ => None,
    };
    let resync = agent.resync_interval();
    let mut buf = [0u8; 256];
    agent.load_manifests();
    loop {
        agent.set_link_stats(link.as_ref().map(|l| {
            let mut s = l.stats();
            s.commands = commands.as_ref().map(Commands::stats).unwrap_or_default();
            s
        }));
        let (a, wake) = tokio::task::spawn_blocking(move || {
            let wake = agent.reconcile();
            (agent, wake)
        })
        .await
        .map_err(|e| DaemonError::Io {
            context: "reconcile task".into(),
            source: std::io::Error::other(e),
        })?;
        agent = a;
        if let Some(t) = &telemetry {
            t.set_targets(agent.telemetry_targets());
        }
        release_free_memory();
        if let (Some(l), Some(st)) = (&link, agent.take_status()) {
            l.publish_status(st);
        }
        let sleep = wake.map_or(resync, |w| w.min(resync));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {
                agent.load_manifests();
            }
            () = watcher.changed() => {
                watcher.settle().await;
                agent.load_manifests();
            }
            r = sock.recv(&mut buf) => {
                if let Ok(n) = r {
                    info!(message = %String::from_utf8_lossy(&buf[..n]).trim(), "notified by a shim or a pull");
                }
            }
            Some(ev) = hub_rx.recv() => {
                if let HubEvent::Desired { state, payload } = ev {
                    let generation = state.generation;
                    agent.set_hub_desired(state, &payload);
                    if let Some(l) = &link {
                        l.set_held_generation(generation);
                    }
                } else if let (HubEvent::Command { payload }, Some(c)) = (ev, commands.as_mut())
                    && let Some(r) = c.handle(&payload, &agent.workloads())
                {
                    let answer = agent.request_restart(&r.workload);
                    c.answer(r.id, answer);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("agent stopping; containers keep running and will be adopted by the next agent");
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

/// Starts the telemetry sampler (only with a hub, and unless `telemetry.interval` is 0).
/// A sampler that cannot start is logged, not fatal: workloads matter more.
fn start_telemetry(agent: &Agent, link: &HubHandle) -> Option<TelemetryHandle> {
    let cfg = &agent.cfg.telemetry;
    if !cfg.enabled() {
        info!("telemetry off (telemetry.interval = 0)");
        return None;
    }
    telemetry::spawn(cfg, &agent.cfg.state_dir, link.clone())
        .map_err(|e| error!("telemetry not started: {e}"))
        .ok()
}

/// Gives the heap's free tail back to the kernel after a pass: the pass's transient
/// allocations would otherwise keep the agent's RSS at its high-water mark. Walks a heap of
/// a few hundred KiB: microseconds.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; no pointer changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The epoch of this run's status and presence sequence numbers, saved in the state
/// folder first (`telemetry::seq::open_file`); the clock decides when it cannot be saved.
fn link_epoch(state_dir: &std::path::Path) -> u64 {
    use crate::telemetry::seq;
    let (g, saved) = seq::open_file(state_dir, seq::LINK_EPOCH_FILE, crate::telemetry::now_s());
    if let Some(e) = saved {
        tracing::warn!(
            epoch = g.epoch(),
            "{e}; status sequence numbers fall back on the clock"
        );
    }
    g.epoch()
}
