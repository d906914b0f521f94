//! `drover-agent`: the edge agent's command line. Each subcommand parses its arguments and
//! calls into the library; no logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drover_agent::{cli, shim};

/// Drover edge agent: runs this device's workloads as OCI containers with cgroup limits,
/// keeps them running while the hub is unreachable, and re-adopts them after restarts.
#[derive(Parser, Debug)]
#[command(name = "drover-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent: reconcile workloads from the manifests folder (standalone mode).
    Run(ConfigArg),
    /// List workloads and their containers.
    Ps {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = cli::Format::Table)]
        output: cli::Format,
    },
    /// Print a container's stdout/stderr log.
    Logs {
        #[command(flatten)]
        config: ConfigArg,
        /// Workload name.
        workload: String,
        /// Container name; may be left out when the workload has one container.
        #[arg(short, long)]
        container: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
        /// Print only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Check that this host can run the agent (cgroups, state folder, overlayfs).
    Preflight(ConfigArg),
    /// Enroll this device with a join token from `drover-hub token create` and write its
    /// config. Exit status: 0 joined; 2 bad arguments or token; 3 the config exists (no
    /// --force); 4 the hub's CA is not the token's (refused before sending anything);
    /// 5 token refused; 6 name refused; 7 hub unreachable or busy; 8 config not writable.
    Join(drover_agent::join::JoinArgs),
    /// Internal: the per-container supervisor started by the agent.
    #[command(hide = true)]
    Shim(shim::ShimArgs),
}

#[derive(clap::Args, Debug)]
struct ConfigArg {
    /// Agent config file (TOML); built-in defaults when absent.
    #[arg(
        long = "config",
        env = "DROVER_AGENT_CONFIG",
        default_value = "/etc/drover/agent.toml"
    )]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The shim must stay single-threaded: dispatch it before anything else starts.
    if let Command::Shim(args) = cli.command {
        return ExitCode::from(shim::main(args).clamp(0, 255) as u8);
    }
    let code = match cli.command {
        Command::Run(c) => {
            one_malloc_arena();
            cli::run(&c.config)
        }
        Command::Ps { config, output } => cli::ps(&config.config, output),
        Command::Logs {
            config,
            workload,
            container,
            follow,
            tail,
        } => cli::logs(
            &config.config,
            &workload,
            container.as_deref(),
            follow,
            tail,
        ),
        Command::Preflight(c) => cli::preflight(&c.config),
        Command::Join(args) => drover_agent::join::main(args),
        Command::Shim(_) => unreachable!("dispatched above"),
    };
    ExitCode::from(code)
}

/// The daemon's few threads (async loop, reconcile passes, image pulls) each allocate a
/// little. glibc gives every new thread its own malloc arena (up to 8 per core) and rarely
/// returns an arena's freed memory, so the agent's RSS crept up with every pass that ran
/// on a new thread (+0.4 MiB over 1,000 updates). One arena keeps it flat; the threads
/// seldom allocate at the same time, so sharing it costs nothing measurable.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
