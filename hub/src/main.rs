//! `drover-hub`: the fleet hub, server and CLI in one binary. Each subcommand parses its
//! arguments and calls into the library; no logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drover_hub::api::token;
use drover_hub::cli::{self, Client, DescribeKind, Format, GetKind};
use drover_hub::config::HubConfig;

/// Drover hub: holds fleet manifests and pushes each device's desired state over MQTT.
#[derive(Parser, Debug)]
#[command(name = "drover-hub", version, about, long_about = None)]
struct Cli {
    /// The hub's API, for every command but `serve`.
    #[arg(
        long,
        global = true,
        env = "DROVER_HUB_API",
        default_value = "http://127.0.0.1:7780"
    )]
    api: String,
    /// Hub config file (TOML) [default: /etc/drover/hub.toml, built-in defaults when
    /// that file does not exist]: `serve` runs with it; the other commands read the hub's
    /// admin token from its `data_dir` (`api.token`) unless --token or --token-file is
    /// given. A file named here (or in $DROVER_HUB_CONFIG) must exist.
    #[arg(long, global = true, env = "DROVER_HUB_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// The hub's token, sent as `Authorization: Bearer TOKEN` [default: the admin token in
    /// the hub's data_dir/api.token, readable by root]. From another machine only the
    /// read-only token (data_dir/read.token) helps, for reads. Prefer $DROVER_HUB_TOKEN or
    /// --token-file: other users can see a command line (`ps`).
    #[arg(
        long,
        global = true,
        env = "DROVER_HUB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// A file holding the hub's token (its first line), instead of --token.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// A client of the API with the token given, if any (`timeout`: per request).
    fn client(&self, timeout: Option<std::time::Duration>) -> Result<Client, String> {
        let client = match timeout {
            Some(t) => Client::with_timeout(&self.api, t),
            None => Client::new(&self.api),
        };
        let token = match (&self.token_file, &self.token) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, Some(t)) if !t.trim().is_empty() => t.clone(),
            (None, _) => data_dir_token(self.config.as_deref(), token::ADMIN_FILE)?,
        };
        Ok(client.with_token(Some(&token)))
    }
}

/// The hub's config: --config, $DROVER_HUB_CONFIG, or the default path.
fn hub_config(path: Option<&std::path::Path>) -> Result<HubConfig, String> {
    match path {
        Some(p) => HubConfig::load(p),
        None => HubConfig::load_or_default(std::path::Path::new(DEFAULT_CONFIG)),
    }
    .map_err(|e| e.to_string())
}

/// The token in the file `name` of the hub's data folder (from the hub's config).
fn data_dir_token(config: Option<&std::path::Path>, name: &str) -> Result<String, String> {
    let config = hub_config(config).map_err(|e| {
        format!(
            "cannot find the hub's token: {e} (or pass --token-file PATH or set DROVER_HUB_TOKEN)"
        )
    })?;
    token::read_token_file(&config.data_dir.join(name)).map_err(|e| e.to_string())
}

/// Where `serve` and the CLI look for the hub's config when none is named.
const DEFAULT_CONFIG: &str = "/etc/drover/hub.toml";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the hub: store, embedded MQTT broker, HTTP API.
    Serve,
    /// Create or update the Deployments and Devices in manifest files (all or nothing).
    ///
    /// `hub:NAME:TAG` images are pinned to the digest the hub's registry holds now; the
    /// devices verify what they pull against it. Prints one line per object and how many
    /// devices get a new desired state. A changed template is a new revision; under a
    /// `RollingUpdate` strategy it is rolled out in health-gated batches.
    ///
    /// With --wait, follows every rollout the apply started. Exit status: 0 applied (and
    /// with --wait every rollout complete), 1 error, 2 usage error, 3 --timeout passed
    /// first, 4 a rollout was rolled back (or undone, or superseded).
    Apply {
        #[command(flatten)]
        change: ChangeArgs,
        /// Wait for the rollouts this apply starts, with a progress bar.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (`90s`, `15m`, `1h`).
        #[arg(long, default_value = "15m", value_parser = parse_duration, requires = "wait")]
        timeout: std::time::Duration,
    },
    /// Delete the Deployments named in manifest files (Device objects are ignored).
    Delete(ChangeArgs),
    /// Show which devices an apply of these files would change, and how (+added
    /// ~changed -removed workloads), without changing anything.
    ///
    /// Exit status, like `kubectl diff`: 0 nothing would change, 1 something would,
    /// 2 or more an error.
    Diff(FilesArg),
    /// List devices or deployments, or show the hub's counters.
    Get {
        kind: GetKind,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show current usage of devices or of their containers, from the latest telemetry
    /// sample of each device (like `kubectl top`).
    Top {
        #[arg(value_enum, default_value_t = cli::top::TopKind::Devices)]
        kind: cli::top::TopKind,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show one device or deployment in detail, with recent events.
    Describe {
        kind: DescribeKind,
        name: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a container's output from a device (its agent must be online).
    ///
    /// The device reads its own rotated log files and sends at most --limit-bytes, at
    /// most 64 KiB/s. With -f, new output is streamed as the container writes it until
    /// Ctrl-C, or until the device goes offline (an error). Exit status: 0 done, 1 error
    /// (device unknown or offline, no such workload or container, device busy, no
    /// answer), 2 usage error (also when the hub or the device finds the request wrong).
    Logs(LogsArgs),
    /// Restart every container of a workload on one device (counted as a restart,
    /// whatever the restart policy). Exit status as for `logs`.
    Restart { device: String, workload: String },
    /// Health-gated rollouts of a Deployment's revisions.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Join tokens for `drover-agent join`: create (default: valid 24h, for 1 device),
    /// ls, revoke.
    #[command(subcommand)]
    Token(cli::enroll::TokenCommand),
    /// Manage the images the hub serves to devices (`hub:NAME:TAG` in manifests).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage dashboard clients: broker logins that are not devices (Node-RED, Grafana,
    /// Telegraf, Home Assistant, a sensor script).
    ///
    /// A client logs in to the broker with its name as client ID and username, is never
    /// listed as a device, and its credential never authenticates a device's status,
    /// presence or telemetry. Clients are read-only unless --publish grants topic filters.
    /// The embedded broker authenticates clients but does NOT restrict their topics
    /// (rumqttd has no topic ACLs): the hub only guarantees that a client can never speak
    /// for a device. To enforce read-only access, run Mosquitto with the file
    /// `drover-hub broker-config mosquitto-acl` writes (and `broker.url`).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Print configuration for an external broker.
    #[command(subcommand)]
    BrokerConfig(BrokerConfigCommand),
    /// Print the dashboard's address with the hub's read-only token, to open once in a
    /// browser (which then keeps the token in a cookie). Reads data_dir/read.token from
    /// the hub's config (root only); the address starts with --api (replace its host when
    /// the browser is on another machine).
    DashboardUrl,
    /// Print version information.
    Version,
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Show the last rollout: revision from → to, phase, counts and each device's state.
    Status(RolloutArgs),
    /// List the revisions: number, created, images, change cause.
    History(RolloutArgs),
    /// Start no new batch until `resume` (updated devices are still judged).
    Pause(RolloutArgs),
    /// Go on with a paused rollout (also after `pauseAfterCanary`).
    Resume(RolloutArgs),
    /// Go back to the previous revision.
    ///
    /// During a rollout: every device goes back to the revision the rollout started from,
    /// at once. Otherwise: the revision before the current one becomes a new revision,
    /// rolled out like an apply (health-gated under a RollingUpdate strategy).
    Undo(RolloutArgs),
    /// Pin `hub:` tags again and roll the same spec out as a new revision.
    Restart(RolloutArgs),
}

#[derive(clap::Args, Debug)]
struct RolloutArgs {
    /// The Deployment's name.
    deployment: String,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(clap::Args, Debug)]
struct LogsArgs {
    /// The device's name.
    device: String,
    /// The workload's name.
    workload: String,
    /// The container; needed when the workload has more than one.
    #[arg(short, long)]
    container: Option<String>,
    /// Keep streaming new output until Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<u32>,
    /// Only output written in the last DURATION (`90s`, `10m`, `2h`), by the device's
    /// clock. Starts at most a second early; for a container writing less than 8 bytes a
    /// second, at most its last 8 bytes before then (a line or so) early.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_text)]
    since: Option<String>,
    /// At most this many bytes in total (the newest ones): `65536`, `64KiB`, `1MiB`,
    /// `500k` (under 4 GiB).
    #[arg(long, value_name = "BYTES", value_parser = cli::device_cmd::parse_limit_bytes)]
    limit_bytes: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Import an OCI image layout folder (one or many platforms) into the hub's registry.
    ///
    /// The hub process reads the folder, so PATH must be on the hub's machine. Every blob is
    /// verified against its digest; nothing is kept when one does not match. Each entry of
    /// the layout's index.json tagged `org.opencontainers.image.ref.name` becomes a tag
    /// (a single untagged image becomes `latest`). With --tag, a layout holding one image
    /// gets that tag; in a layout holding several, --tag picks the entry tagged so.
    Import {
        /// The OCI image layout folder (with index.json and blobs/).
        path: PathBuf,
        /// Repository name (e.g. `tools/busybox`); default the folder's name.
        #[arg(long)]
        name: Option<String>,
        /// Tag; default the layout's own tag(s).
        #[arg(long)]
        tag: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List the images: NAME TAG DIGEST PLATFORMS SIZE.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Register a client and print its credential (only this once) with a ready-to-paste
    /// mosquitto_sub line and Node-RED settings.
    ///
    /// Every client may read the JSON mirrors (`drover/v1/dev/+/status/json`,
    /// `…/telemetry/json`), presence (`…/online`) and the Home Assistant prefix. Grants
    /// may not reach into the device topics (`drover/v1/dev/…`). The embedded broker does
    /// not enforce grants (it has no topic ACLs); Mosquitto does, with
    /// `drover-hub broker-config mosquitto-acl`.
    Add {
        name: String,
        /// A topic filter the client may publish to (e.g. `drover/v1/sensors/#`); repeat
        /// for more. Without it the client is read-only.
        #[arg(long = "publish", value_name = "TOPIC_FILTER")]
        publish: Vec<String>,
        /// A topic filter the client may read besides the mirrors; repeat for more.
        #[arg(long = "subscribe", value_name = "TOPIC_FILTER")]
        subscribe: Vec<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List the clients: NAME PUBLISH SUBSCRIBE CREATED (never their credentials).
    #[command(alias = "list")]
    Ls {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a client: it cannot log in again. A connection it holds stays open until it
    /// disconnects (the embedded broker cannot close it from outside).
    Rm {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Subcommand, Debug)]
enum BrokerConfigCommand {
    /// A Mosquitto `acl_file` for every device, client and the hub: devices read their own
    /// desired state and write their own status, telemetry and presence; clients read the
    /// JSON mirrors, presence and the Home Assistant prefix and write only what --publish
    /// granted; the hub uses every Drover topic. Write it again after registering devices or
    /// clients and reload Mosquitto (SIGHUP). Passwords go in Mosquitto's `password_file`
    /// (`mosquitto_passwd`): the hub's and each client's credential, each device's MQTT
    /// password (derived from its credential; `device add` prints it).
    MosquittoAcl {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// A Mosquitto TLS `listener` block with the hub's fleet CA and server certificate
    /// (created in `data_dir/tls` if needed, for the names of the hub's config). Run on
    /// the hub's machine; devices then use `broker.url = "mqtts://HOST:PORT"`.
    MosquittoTls {
        /// Port of the TLS listener.
        #[arg(long, default_value_t = 8883)]
        port: u16,
    },
}

#[derive(clap::Args, Debug)]
struct FilesArg {
    /// A manifest file, or a folder whose *.yaml / *.yml files are read in name order.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ChangeArgs {
    #[command(flatten)]
    files: FilesArg,
    /// Plan and print which devices would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Register a device and print the agent config snippet it needs.
    Add {
        name: String,
        /// A label `key=value`; repeat for more.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Register many devices at once from a CSV or YAML file (all or nothing).
    ///
    /// CSV: a header line `name,labels`, then one device per line, labels as `key=value`
    /// pairs separated by `;` (`pi-7,role=sensor;zone=north`); `#` starts a comment.
    /// YAML: `kind: Device` documents, as in fleet manifests. Each device gets a fresh
    /// credential, shown only in this answer: keep it with `-o json` or `--out-dir`.
    Import {
        /// The CSV (`*.csv`) or YAML (`*.yaml`, `*.yml`) file.
        file: PathBuf,
        /// Write each device's agent config snippet to DIR/NAME.toml (mode 0600).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Cut a device off: the broker and the registry refuse it, nothing is placed on it,
    /// the hub ignores what it sends. It stays listed (revoked) and its name cannot join
    /// again.
    Revoke {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: drover_protocol::quantity::DurationMs = s.parse().map_err(|e| format!("{e}"))?;
    Ok(std::time::Duration::from_millis(d.0))
}

/// Checks a duration and keeps it as typed (the hub parses it again).
fn parse_duration_text(s: &str) -> Result<String, String> {
    parse_duration(s).map(|_| s.to_owned())
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    drover_hub::fleet::parse_label(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match &cli.command {
        Command::Serve
        | Command::Version
        | Command::DashboardUrl
        | Command::BrokerConfig(BrokerConfigCommand::MosquittoTls { .. }) => Client::new(&cli.api),
        // Copying a large image onto slow storage takes a while.
        Command::Image(ImageCommand::Import { .. }) => {
            match cli.client(Some(std::time::Duration::from_secs(3600))) {
                Ok(c) => c,
                // No readable token: an error (1), not a usage mistake (2).
                Err(e) => return fail(&e, ExitCode::FAILURE),
            }
        }
        _ => match cli.client(None) {
            Ok(c) => c,
            Err(e) => return fail(&e, ExitCode::FAILURE),
        },
    };
    let config = cli.config.clone();
    let result = match cli.command {
        Command::Serve => hub_config(config.as_deref()).and_then(serve),
        Command::DashboardUrl => data_dir_token(config.as_deref(), token::READ_FILE).map(|t| {
            println!("{}/?token={t}", client.base());
        }),
        Command::BrokerConfig(BrokerConfigCommand::MosquittoTls { port }) => {
            hub_config(config.as_deref()).and_then(|c| mosquitto_tls(&c, port))
        }
        Command::Version => {
            println!("drover-hub {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Diff(f) => return diff(&client, &f),
        command @ (Command::Logs(_) | Command::Restart { .. }) => {
            return device_command(&client, command);
        }
        Command::Apply {
            change,
            wait: true,
            timeout,
        } => return apply_wait(&client, &change, timeout),
        command => run_client(&client, command).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, ExitCode::FAILURE),
    }
}

fn fail(e: &str, code: ExitCode) -> ExitCode {
    eprintln!("drover-hub: {e}");
    code
}

/// `logs` and `restart`: see the exit status in `logs --help`.
fn device_command(client: &Client, command: Command) -> ExitCode {
    match run_client(client, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-hub: {e}");
            ExitCode::from(cli::device_cmd::exit_code(&e))
        }
    }
}

/// `apply --wait`: see the exit status in `apply --help`.
fn apply_wait(client: &Client, a: &ChangeArgs, timeout: std::time::Duration) -> ExitCode {
    let outcome = cli::apply(client, &a.files.files, false, a.dry_run, a.output).and_then(|r| {
        if a.dry_run {
            return Ok(cli::rollout::WaitOutcome::Complete);
        }
        cli::rollout::wait(client, &r.rollouts, &r.unchanged_rollouts, timeout)
    });
    match outcome {
        Ok(o) => ExitCode::from(o.exit_code()),
        Err(e) => {
            eprintln!("drover-hub: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `diff -f`: 0 nothing would change, 1 something would, 2 error.
fn diff(client: &Client, f: &FilesArg) -> ExitCode {
    match cli::apply(client, &f.files, false, true, Format::Table) {
        Ok(r) if r.changed_devices == 0 && r.results.iter().all(|l| l.ends_with(" unchanged")) => {
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("drover-hub: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_client(client: &Client, command: Command) -> Result<(), cli::CliError> {
    match command {
        Command::Apply { change: a, .. } => {
            cli::apply(client, &a.files.files, false, a.dry_run, a.output).map(drop)
        }
        Command::Rollout(r) => rollout(client, r),
        Command::Delete(a) => {
            cli::apply(client, &a.files.files, true, a.dry_run, a.output).map(drop)
        }
        Command::Device(DeviceCommand::Import {
            file,
            out_dir,
            output,
        }) => cli::import_devices(client, &file, out_dir.as_deref(), output),
        Command::Get { kind, output } => cli::get(client, kind, output),
        Command::Top { kind, output } => cli::top::top(client, kind, output),
        Command::Describe { kind, name, output } => cli::describe(client, kind, &name, output),
        Command::Device(DeviceCommand::Add {
            name,
            labels,
            output,
        }) => cli::add_device(client, &name, labels, output),
        Command::Device(DeviceCommand::Revoke { name, output }) => {
            cli::enroll::device_revoke(client, &name, output)
        }
        Command::Token(t) => cli::enroll::token(client, t),
        Command::Image(ImageCommand::Import {
            path,
            name,
            tag,
            output,
        }) => cli::image_import(client, &path, name, tag, output),
        Command::Image(ImageCommand::Ls { output }) => cli::image_ls(client, output),
        Command::Client(ClientCommand::Add {
            name,
            publish,
            subscribe,
            output,
        }) => cli::clients::add(client, &name, publish, subscribe, output),
        Command::Client(ClientCommand::Ls { output }) => cli::clients::ls(client, output),
        Command::Client(ClientCommand::Rm { name, output }) => {
            cli::clients::rm(client, &name, output)
        }
        Command::BrokerConfig(BrokerConfigCommand::MosquittoAcl { output }) => {
            cli::clients::mosquitto_acl(client, output)
        }
        Command::Logs(a) => {
            let o = cli::device_cmd::LogsOptions {
                device: a.device,
                workload: a.workload,
                container: a.container,
                follow: a.follow,
                tail: a.tail,
                since: a.since,
                limit_bytes: a.limit_bytes,
            };
            let (mut out, mut notes) = (std::io::stdout().lock(), std::io::stderr().lock());
            cli::device_cmd::logs(client, &o, &mut out, &mut notes)
        }
        Command::Restart { device, workload } => {
            cli::device_cmd::restart(client, &device, &workload)
        }
        Command::Serve
        | Command::Version
        | Command::DashboardUrl
        | Command::Diff(_)
        | Command::BrokerConfig(BrokerConfigCommand::MosquittoTls { .. }) => Ok(()),
    }
}

fn rollout(client: &Client, r: RolloutCommand) -> Result<(), cli::CliError> {
    use drover_hub::views::RolloutAction;
    let (args, action) = match r {
        RolloutCommand::Status(a) => return cli::rollout::status(client, &a.deployment, a.output),
        RolloutCommand::History(a) => {
            return cli::rollout::history(client, &a.deployment, a.output);
        }
        RolloutCommand::Pause(a) => (a, RolloutAction::Pause),
        RolloutCommand::Resume(a) => (a, RolloutAction::Resume),
        RolloutCommand::Undo(a) => (a, RolloutAction::Undo),
        RolloutCommand::Restart(a) => (a, RolloutAction::Restart),
    };
    cli::rollout::action(client, &args.deployment, action, args.output).map(drop)
}

fn mosquitto_tls(config: &HubConfig, port: u16) -> Result<(), String> {
    let (_, _) = drover_hub::tls::setup(config).map_err(|e| e.to_string())?;
    print!(
        "{}",
        drover_hub::tls::mosquitto_listener(&config.data_dir.join("tls"), port)
    );
    Ok(())
}

fn serve(config: HubConfig) -> Result<(), String> {
    if config.broker.url.is_empty() && config.broker.max_connections == 0 {
        return Err("broker.max_connections must be at least 1 (it bounds the embedded broker's connections)".to_owned());
    }
    if config.dashboards.home_assistant {
        drover_hub::telemetry::homeassistant::check_prefix(
            &config.dashboards.home_assistant_prefix,
        )
        .map_err(|e| e.to_string())?;
    }
    init_logging(&config.log_level);
    drover_hub::serve::run(config).map_err(|e| e.to_string())
}

/// RUST_LOG wins; otherwise the configured filter, with rumqttd kept at `warn` unless the
/// filter names it (it logs every clean disconnect as an error-level line otherwise noisy).
fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ if level.contains("rumqttd") => level.to_owned(),
        _ => format!("{level},rumqttd=warn"),
    };
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use clap::error::ErrorKind;

    use super::Cli;

    fn parse(args: &[&str]) -> Result<Cli, ErrorKind> {
        Cli::try_parse_from(args).map_err(|e| e.kind())
    }

    #[test]
    fn the_token_is_global_and_comes_from_one_place() {
        let cli = Cli::try_parse_from(["drover-hub", "get", "devices", "--token", "t0k"]).unwrap();
        assert_eq!(cli.token.as_deref(), Some("t0k"));
        assert_eq!(
            parse(&["drover-hub", "--token", "a", "--token-file", "f", "top"]).err(),
            Some(ErrorKind::ArgumentConflict)
        );
        let dir = std::env::temp_dir().join(format!("drover-token-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        let path = dir.to_str().unwrap();
        let cli = Cli::try_parse_from(["drover-hub", "--token-file", path, "top"]).unwrap();
        assert!(cli.client(None).is_ok());
        std::fs::remove_file(&dir).unwrap();
        let err = cli.client(None).err().unwrap();
        assert!(err.starts_with("--token-file "), "{err}");
    }

    #[test]
    fn without_a_token_the_cli_reads_the_admin_token_from_the_hubs_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hub.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!("data_dir = {:?}\n", data.display().to_string()),
        )
        .unwrap();
        let path = config.to_str().unwrap();
        let cli = Cli::try_parse_from(["drover-hub", "--config", path, "get", "devices"]).unwrap();
        let err = cli.client(None).err().unwrap();
        assert!(
            err.contains("data/api.token") && err.contains("run as root"),
            "{err}"
        );
        std::fs::create_dir(&data).unwrap();
        let tokens = drover_hub::api::token::load_or_create(&data).unwrap();
        assert!(cli.client(None).is_ok());
        assert_eq!(
            super::data_dir_token(Some(&config), super::token::READ_FILE).unwrap(),
            tokens.read
        );
        let cli = Cli::try_parse_from(["drover-hub", "serve", "--config", path]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(config.as_path()));
    }

    #[test]
    fn timeout_needs_wait_and_a_duration() {
        assert!(parse(&["drover-hub", "apply", "-f", "a.yaml", "--wait"]).is_ok());
        assert!(
            parse(&[
                "drover-hub",
                "apply",
                "-f",
                "a.yaml",
                "--wait",
                "--timeout",
                "90s"
            ])
            .is_ok()
        );
        assert_eq!(
            parse(&["drover-hub", "apply", "-f", "a.yaml", "--timeout", "90s"]).err(),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            parse(&[
                "drover-hub",
                "apply",
                "-f",
                "a.yaml",
                "--wait",
                "--timeout",
                "abc"
            ])
            .err(),
            Some(ErrorKind::ValueValidation)
        );
    }
}
