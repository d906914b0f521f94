//! `drover-embedded-broker`: the hub's embedded broker (`drover_hub::broker::broker_config`,
//! rumqttd) alone in its own process, so that bench/broker.sh measures the broker's time,
//! memory and CPU without the hub's controller and store.
//!
//! Credentials come from the file `drover-loadgen broker` reads. Flags override single
//! rumqttd settings, to try them without rebuilding; without flags the configuration is
//! exactly the hub's. This binary must never be more than a bench harness.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use clap::Parser;
use drover_hub::broker::{HUB_CLIENT_ID, broker_config};

#[derive(Parser)]
#[command(
    name = "drover-embedded-broker",
    about = "The hub's embedded broker, alone"
)]
struct Cli {
    #[arg(long)]
    listen: SocketAddr,
    /// JSON `{"hub_credential": "...", "devices": [[name, credential], ...]}`.
    #[arg(long)]
    creds: PathBuf,
    #[arg(long)]
    max_connections: usize,
    /// Do not create every device's `…/desired` filter at start (rumqttd
    /// `initialized_filters`, which the hub sets), to measure without it.
    #[arg(long)]
    no_initialized_filters: bool,
    #[arg(long)]
    max_outgoing_packet_count: Option<u64>,
    #[arg(long)]
    max_inflight_count: Option<usize>,
    #[arg(long)]
    max_segment_size: Option<usize>,
    #[arg(long)]
    max_segment_count: Option<usize>,
    #[arg(long)]
    connection_timeout_ms: Option<u16>,
    #[arg(long)]
    next_connection_delay_ms: Option<u64>,
}

fn main() {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let (hub_cred, devices) = match read_creds(&cli.creds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drover-embedded-broker: {e}");
            std::process::exit(1);
        }
    };
    // The file's values are used as the MQTT passwords themselves (as Mosquitto's password
    // file in bench/broker.py), so `drover-loadgen broker` logs in to either the same way.
    let mut map: HashMap<String, _> = devices
        .into_iter()
        .map(|(name, cred)| (name, drover_hub::broker::hub_keys(&cred)))
        .collect();
    map.insert(
        HUB_CLIENT_ID.to_owned(),
        drover_hub::broker::hub_keys(&hub_cred),
    );
    let logins = drover_hub::broker::Logins {
        devices: Arc::new(RwLock::new(map)),
        clients: Default::default(),
    };
    let mut config = broker_config(cli.listen, cli.max_connections, logins);
    let r = &mut config.router;
    if cli.no_initialized_filters {
        r.initialized_filters = None;
    }
    set(
        &mut r.max_outgoing_packet_count,
        cli.max_outgoing_packet_count,
    );
    set(&mut r.max_segment_size, cli.max_segment_size);
    set(&mut r.max_segment_count, cli.max_segment_count);
    for server in config.v4.iter_mut().flat_map(|v4| v4.values_mut()) {
        set(
            &mut server.next_connection_delay_ms,
            cli.next_connection_delay_ms,
        );
        set(
            &mut server.connections.max_inflight_count,
            cli.max_inflight_count,
        );
        set(
            &mut server.connections.connection_timeout_ms,
            cli.connection_timeout_ms,
        );
    }
    let mut broker = rumqttd::Broker::new(config);
    if let Err(e) = broker.start() {
        eprintln!("drover-embedded-broker: broker stopped: {e}");
        std::process::exit(1);
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

type Creds = (String, Vec<(String, String)>);

fn read_creds(path: &PathBuf) -> Result<Creds, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let hub = doc["hub_credential"]
        .as_str()
        .ok_or_else(|| format!("{}: no hub_credential", path.display()))?
        .to_owned();
    let devices = doc["devices"]
        .as_array()
        .ok_or_else(|| format!("{}: no devices", path.display()))?
        .iter()
        .filter_map(|d| Some((d[0].as_str()?.to_owned(), d[1].as_str()?.to_owned())))
        .collect();
    Ok((hub, devices))
}
