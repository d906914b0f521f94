//! `drover-hub`: the fleet hub (server and CLI in one binary). The server arrives with the
//! MQTT channel; for now the binary only describes itself.

use clap::{Parser, Subcommand};

/// Drover hub: holds fleet manifests and pushes each device's desired state over MQTT.
#[derive(Parser, Debug)]
#[command(name = "drover-hub", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print version information.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => println!("drover-hub {}", env!("CARGO_PKG_VERSION")),
        None => {
            eprintln!("drover-hub: the hub server is not built yet (see issue 3); try --help");
            std::process::exit(2);
        }
    }
}
