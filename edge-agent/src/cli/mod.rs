//! The agent's subcommands (other than the hidden `shim`): each loads the config and
//! calls one piece of the library. Exit codes: 0 ok, 1 error, 2 usage (clap).

mod logs;
mod ps;

use std::path::Path;

use tracing::{error, info, warn};

use crate::config::AgentConfig;
use crate::daemon::{self, Agent};
use crate::preflight;

pub use logs::logs;
pub use ps::{Format, ps};

/// The config file used when `--config` is not given; missing means built-in defaults.
pub const DEFAULT_CONFIG: &str = "/etc/drover/agent.toml";

/// Loads the config: built-in defaults only when the default file is absent.
pub fn load_config(path: &Path) -> Result<AgentConfig, String> {
    let loaded = if path == Path::new(DEFAULT_CONFIG) {
        AgentConfig::load_or_default(path)
    } else {
        AgentConfig::load(path)
    };
    loaded.map_err(|e| e.to_string())
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// `drover-agent run`.
pub fn run(config: &Path) -> u8 {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return 1;
        }
    };
    init_tracing(&cfg.log_level);
    match preflight::check(&cfg.state_dir) {
        Ok(report) => {
            for w in &report.warnings {
                warn!("preflight: {w}");
            }
        }
        Err(e) => {
            error!("preflight failed: {e}");
            return 1;
        }
    }
    info!(version = env!("CARGO_PKG_VERSION"), device = %cfg.device, manifests = ?cfg.manifests_dir, "drover-agent starting");
    let result = Agent::open(cfg).and_then(daemon::run);
    match result {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            1
        }
    }
}

/// `drover-agent preflight`.
pub fn preflight(config: &Path) -> u8 {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return 1;
        }
    };
    match preflight::check(&cfg.state_dir) {
        Ok(r) => {
            let controllers: Vec<&str> = r.controllers.iter().map(String::as_str).collect();
            println!("cgroup version:   {:?}", r.cgroup_version);
            println!("controllers:      {}", controllers.join(" "));
            println!(
                "swap accounting:  {}",
                if r.swap_accounting { "yes" } else { "no" }
            );
            println!("state folder:     {} (writable)", cfg.state_dir.display());
            for w in &r.warnings {
                println!("warning: {w}");
            }
            println!("ok: this host can run drover-agent");
            0
        }
        Err(e) => {
            eprintln!("drover-agent: preflight failed: {e}");
            1
        }
    }
}
