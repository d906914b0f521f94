//! `drover-hub serve`: wires the pieces into one process — store, signing key, embedded
//! broker (unless `broker.url`), the hub's MQTT client, and the HTTP API — and runs until
//! SIGINT or SIGTERM. This module only assembles; it decides nothing.

use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::api::ApiState;
use crate::broker::{self, BrokerError};
use crate::commands::CommandHub;
use crate::config::HubConfig;
use crate::controller::{self, Controller, ControllerError, ReadSide, Settings};
use crate::keys::{self, KeysError};
use crate::mqtt::{self, ClientSettings, MqttError};
use crate::registry::{Registry, RegistryError};
use crate::store::{Store, StoreError};
use crate::tls::listener as tls_listener;
use axum::serve::ListenerExt;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Token(#[from] crate::api::token::TokenError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    History(#[from] crate::telemetry::HistoryError),
    #[error("cannot listen on {addr} for the API: {source}")]
    Api {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Enroll(#[from] crate::enroll::EnrollError),
    #[error("{0}")]
    Plain(String),
    #[error("cannot start the controller thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the hub until SIGINT/SIGTERM.
pub fn run(config: HubConfig) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(serve(config, shutdown_signal()))
}

/// Runs the hub until `shutdown` completes. Must be called inside a tokio runtime.
pub async fn serve(
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let dir = &config.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServeError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    for w in config.check_plain_listeners().map_err(ServeError::Plain)? {
        tracing::warn!("{w}");
    }
    let (tls, server_tls) = crate::tls::setup(&config)?;
    // MQTT-over-TLS connections by login: `device revoke` closes a revoked device's.
    let mqtt_sessions = crate::tls::sessions::MqttSessions::default();
    let db = dir.join("fleet.db");
    let store = Store::open(&db)?;
    // The store holds every device's credential: owner only, whatever the umask or a
    // data folder created beforehand allow (SQLite gives its -wal/-shm the same mode).
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("fleet.db{suffix}"));
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| ServeError::DataDir {
                    path: path.display().to_string(),
                    source,
                },
            )?;
        }
    }
    let registry = Arc::new(Registry::open(&dir.join("registry"))?);
    let key = keys::load_or_create_signing_key(dir)?;
    let command_key = key.clone();
    let hub_credential = keys::load_or_create_hub_credential(dir)?;
    let api_tokens = crate::api::token::load_or_create(dir)?;
    let secret_box = crate::secrets::SecretBox::load_or_create(dir)
        .map_err(|e| crate::controller::ControllerError::Invalid(e.to_string()))?;
    let device_broker = config.device_broker_address();
    let settings = Settings {
        offline_after_ms: config.offline_after.0,
        device_broker: config.device_broker_address(),
        embedded_broker: config.broker.url.is_empty(),
        device_ca: config.devices_use_tls().then(|| tls.ca_pem.clone()),
        policy: config.policy.clone(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let telemetry = crate::telemetry::TelemetryCache::default();
    let events = crate::events::Events::default();
    let started = std::time::Instant::now();
    let (mirrors, mirror_rx) = crate::telemetry::Mirrors::channel();
    let mirrors = if config.dashboards.json_mirrors {
        mirrors
    } else {
        crate::telemetry::Mirrors::disabled()
    };
    let mut controller = Controller::new(store, key, hub_credential.clone(), settings.clone(), tx)?
        .with_registry(registry.clone())
        .with_outputs(mirrors.clone(), events.clone())
        .with_secret_box(secret_box)?;
    controller.resync(crate::now_ms())?;
    tracing::info!(
        devices = controller.device_count(),
        ms = started.elapsed().as_millis() as u64,
        "fleet loaded"
    );
    let public_key = controller.public_key();
    tracing::info!(public_key = %public_key, "hub signing key");
    let creds = controller.credentials();
    if config.broker.url.is_empty() {
        if let Some(w) = broker::capacity_warning(controller.device_count()) {
            tracing::warn!("{w}");
        }
        let logins = broker::Logins {
            devices: creds.clone(),
            clients: controller.client_credentials(),
        };
        broker::spawn(config.broker.listen, config.broker.max_connections, logins)?;
        tracing::info!(listen = %config.broker.listen, "embedded MQTT broker started");
        if let Some(addr) = config.broker.tls_listen.0 {
            let (rx, local) = tls_listener::bind("MQTT", addr, server_tls.clone()).await?;
            let target = crate::tls::loopback_target(config.broker.listen);
            tokio::spawn(tls_listener::splice_to(rx, target, mqtt_sessions.clone()));
            tracing::info!(listen = %local, "MQTT over TLS listening");
        }
    }
    let read = ReadSide::new(
        Store::open_read(&db)?,
        settings,
        controller.warnings(),
        controller.metrics(),
    );
    let handle = controller::spawn(controller).map_err(ServeError::Thread)?;
    let history_path = dir.join("telemetry.db");
    let service = crate::telemetry::Service::spawn(
        &crate::telemetry::Settings {
            history_path: history_path.clone(),
            keep_minutes: config.telemetry.history.0 / 60_000,
            home_assistant: home_assistant(&config),
        },
        creds.clone(),
        telemetry.clone(),
        mirrors.clone(),
        events.clone(),
    )?;
    let history = crate::telemetry::HistoryReader::open(&history_path)?;
    let client = ClientSettings {
        address: config.client_broker_address(),
        credential: hub_credential,
        tls: Some(crate::tls::client_config(&tls.ca_pem)?),
    };
    let commands = CommandHub::new(command_key, creds.clone(), Store::open(&db)?);
    let inbound = mqtt::Inbound {
        controller: handle.clone(),
        telemetry: service.clone(),
        commands: commands.clone(),
    };
    let outbound = mqtt::Outbound {
        outbox: rx,
        mirrors: mirror_rx,
        mirror_counter: mirrors.clone(),
    };
    mqtt::spawn(&client, inbound, outbound)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| ServeError::Api {
            addr: config.api.listen,
            source,
        })?;
    let registry_url = config.device_registry_url();
    tracing::info!(listen = %config.api.listen, registry = %registry_url, "API listening");
    let state = ApiState {
        controller: handle,
        read: Arc::new(Mutex::new(read)),
        registry_url,
        telemetry,
        history: Arc::new(Mutex::new(history)),
        mirrors,
        events,
        home_assistant_prefix: config.dashboards.home_assistant_prefix.clone(),
        access: crate::web::access::ApiAccess::new(&api_tokens, &config.api.token, dir),
        commands,
    };
    let enroll = crate::enroll::EnrollState {
        controller: state.controller.clone(),
        kx: crate::enroll::kx::HubKx::load_or_create(dir)?,
        ca_sha256: crate::enroll::ca_sha256(&tls.ca_pem)?,
        ca_pem: tls.ca_pem.clone(),
        public_key: public_key.clone(),
        broker: device_broker,
        registry: state.registry_url.clone(),
        // The API's HTTPS listener serves the registry too: the same address.
        join_url: state.registry_url.clone(),
        sessions: mqtt_sessions,
        limit: Arc::new(Mutex::new(crate::enroll::check::JoinLimit::new(
            crate::enroll::JOIN_BURST,
            60_000,
        ))),
    };
    let app = crate::api::router(state.clone(), creds, registry)
        .merge(crate::enroll::router(enroll, state.access));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if let Some(addr) = config.api.tls_listen.0 {
        let (rx, local) = tls_listener::bind("HTTPS", addr, server_tls).await?;
        tracing::info!(listen = %local, "API and registry listening over HTTPS");
        let incoming = tls_listener::Incoming { rx, local }.tap_io(|_| {});
        let service = app
            .clone()
            .layer(axum::Extension(crate::web::access::OverTls))
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            // Never fails: the listener logs its own errors.
            let _ = axum::serve(incoming, service)
                .with_graceful_shutdown(stop)
                .await;
        });
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stopped(stop_rx))
    .await
    .map_err(|source| ServeError::Api {
        addr: config.api.listen,
        source,
    })?;
    tokio::task::spawn_blocking(move || service.flush(std::time::Duration::from_secs(10)))
        .await
        .ok();
    tracing::info!("hub stopped");
    Ok(())
}

/// The discovery prefix when Home Assistant discovery is on and can work (it points
/// Home Assistant at the JSON mirrors).
fn home_assistant(config: &HubConfig) -> Option<String> {
    let d = &config.dashboards;
    if d.home_assistant && !d.json_mirrors {
        tracing::warn!(
            "dashboards.home_assistant needs dashboards.json_mirrors = true: no discovery messages are published"
        );
    }
    (d.home_assistant && d.json_mirrors).then(|| d.home_assistant_prefix.clone())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
