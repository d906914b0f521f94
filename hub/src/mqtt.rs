//! The hub's MQTT client (rumqttc): connects to the embedded broker over loopback or to
//! the external one, reconnects with jittered exponential back-off, passes incoming status
//! and presence messages to the controller thread (which folds them in batches), and
//! publishes what the controller queued, in order.
//!
//! On every (re)connect the subscription to statuses and presence goes out first, before
//! any publish that waited in the client's queue (a device answers a desired state within
//! milliseconds, and a status sent before the hub subscribed is lost to it: the session
//! is clean). Then the controller is told, and queues every stored desired state: the
//! embedded broker forgets retained messages, and the store is the source of truth.
//! After a reconnect, and when Home Assistant publishes `online` on its birth topic, the
//! telemetry thread is asked to send the discovery configs again (it coalesces).
//! This module must never decide anything: it moves bytes between broker and controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drover_protocol::topics;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, Request, Subscribe, SubscribeFilter,
};
use tokio::sync::mpsc::{Receiver, UnboundedReceiver};

use crate::broker::HUB_CLIENT_ID;
use crate::commands::CommandHub;
use crate::controller::{Command, Handle, Out};
use crate::telemetry::{MirrorMsg, Mirrors, homeassistant};
use drover_protocol::MAX_MQTT_PACKET_BYTES;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where and as whom the hub connects.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `host:port` (plain) or `mqtts://host:port` (TLS with `tls`).
    pub address: String,
    pub credential: String,
    /// The client config for `mqtts://` (only the fleet CA as root).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("broker address {0:?} is not host:port or mqtts://host:port")]
    Address(String),
    #[error("broker address {0:?} is mqtts:// but the hub has no fleet CA to pin")]
    NoCa(String),
}

/// QoS 1 publishes in flight at once: a 10,000-device apply must not wait for each
/// PUBACK in turn.
const MAX_INFLIGHT: u16 = 1_000;

/// Where incoming messages go: statuses and presence to the controller, telemetry to
/// the telemetry thread, answers to commands to the command hub.
#[derive(Clone)]
pub struct Inbound {
    pub controller: Handle,
    pub telemetry: crate::telemetry::Service,
    /// Answers to commands (`…/cmd/resp`), routed to the waiting API requests.
    pub commands: Arc<CommandHub>,
}

/// What the client publishes: the controller's outbox (desired states, in order) and the
/// JSON mirrors (best effort).
pub struct Outbound {
    pub outbox: UnboundedReceiver<Out>,
    pub mirrors: Receiver<MirrorMsg>,
    /// The sending side of `mirrors`, for counting the ones dropped here.
    pub mirror_counter: Mirrors,
}

/// Starts the client: one task polls the connection, one publishes the outbox, one the
/// JSON mirrors.
pub fn spawn(
    settings: &ClientSettings,
    inbound: Inbound,
    outbound: Outbound,
) -> Result<(), MqttError> {
    let a = &settings.address;
    let (tls, hostport) = match a.strip_prefix("mqtts://") {
        Some(rest) => (true, rest),
        None => (false, a.strip_prefix("mqtt://").unwrap_or(a)),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| MqttError::Address(a.clone()))?;
    let mut opts = MqttOptions::new(HUB_CLIENT_ID, host, port);
    if tls {
        let config = settings
            .tls
            .clone()
            .ok_or_else(|| MqttError::NoCa(a.clone()))?;
        opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            config,
        )));
    }
    opts.set_credentials(HUB_CLIENT_ID, settings.credential.clone())
        .set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MQTT_PACKET_BYTES)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(MAX_INFLIGHT)
        .set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    eventloop.set_network_options(no_delay());
    let connected = Arc::new(AtomicBool::new(false));
    inbound.commands.set_client(client.clone());
    tokio::spawn(poll(eventloop, inbound, connected.clone()));
    tokio::spawn(publish(client.clone(), outbound.outbox));
    tokio::spawn(mirror(
        client,
        outbound.mirrors,
        outbound.mirror_counter,
        connected,
    ));
    Ok(())
}

async fn poll(mut eventloop: EventLoop, inbound: Inbound, connected_flag: Arc<AtomicBool>) {
    let controller = inbound.controller;
    let birth = inbound.telemetry.birth_topic().map(str::to_owned);
    let mut backoff = MIN_BACKOFF;
    let mut connected = false;
    let mut reconnect = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("connected to the MQTT broker");
                connected = true;
                connected_flag.store(true, Ordering::Relaxed);
                backoff = MIN_BACKOFF;
                // rumqttc sends its pending queue before the requests channel, where
                // publishes queued while disconnected wait.
                eventloop
                    .pending
                    .push_front(Request::Subscribe(subscription(birth.as_deref())));
                controller.send(Command::Connected);
                if reconnect {
                    // The broker may have lost the retained configs (a restart).
                    inbound.telemetry.rediscover("reconnected to the broker");
                }
                reconnect = true;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                tracing::debug!(codes = ?ack.return_codes, "subscribed to device statuses and presence");
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/telemetry") => inbound
                .telemetry
                .offer(p.topic, p.payload.to_vec(), crate::now_ms()),
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/cmd/resp") => {
                inbound.commands.deliver(&p.topic, &p.payload);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if birth.as_ref() == Some(&p.topic) => {
                if p.payload.as_ref() == homeassistant::BIRTH_PAYLOAD {
                    inbound.telemetry.rediscover("Home Assistant birth message");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => controller.send(Command::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
                at_ms: crate::now_ms(),
            }),
            Ok(_) => {}
            Err(e) => {
                if connected {
                    tracing::warn!("lost the MQTT broker: {e}");
                } else {
                    tracing::debug!("cannot reach the MQTT broker: {e}");
                }
                connected = false;
                connected_flag.store(false, Ordering::Relaxed);
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn publish(client: AsyncClient, mut rx: UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        let Out::Publish(p) = out;
        if let Err(e) = client
            .publish(p.topic, QoS::AtLeastOnce, true, p.payload)
            .await
        {
            tracing::warn!("MQTT client request failed: {e}");
        }
    }
}

/// Hands JSON mirrors to the client while connected; drops (and counts) them otherwise
/// or when the client's request channel is full: they must never hold up desired states.
async fn mirror(
    client: AsyncClient,
    mut rx: Receiver<MirrorMsg>,
    counter: Mirrors,
    connected: Arc<AtomicBool>,
) {
    while let Some(m) = rx.recv().await {
        let sent = connected.load(Ordering::Relaxed)
            && client
                .try_publish(m.topic, QoS::AtMostOnce, m.retain, m.payload)
                .is_ok();
        if !sent {
            counter.count_dropped();
        }
    }
}

/// One SUBSCRIBE for every device's status, presence, answers to commands and retained
/// desired state (`drover/v1/dev/+/status`, `…/online`, `…/cmd/resp`, `…/desired`,
/// QoS 1), telemetry
/// (`…/telemetry`, QoS 0: a lost sample is only a gap) and, with Home Assistant
/// discovery on, HA's birth topic `{prefix}/status` (QoS 0, as HA sends it).
fn subscription(birth: Option<&str>) -> Subscribe {
    let filter =
        |leaf: &str, qos| SubscribeFilter::new(format!("{}/dev/+/{leaf}", topics::ROOT), qos);
    let mut filters = vec![
        filter("status", QoS::AtLeastOnce),
        filter("online", QoS::AtLeastOnce),
        filter("cmd/resp", QoS::AtLeastOnce),
        // The hub's own retained desired states come back here; anything else is a
        // forgery or a deletion, published over again (`controller/retained.rs`).
        filter("desired", QoS::AtLeastOnce),
        filter("telemetry", QoS::AtMostOnce),
    ];
    filters.extend(birth.map(|t| SubscribeFilter::new(t.to_owned(), QoS::AtMostOnce)));
    Subscribe::new_many(filters)
}

/// TCP_NODELAY: a desired state is one small packet that should leave now, not wait for
/// the broker's delayed ACK of the previous one (Nagle's algorithm added ~40 ms per change).
fn no_delay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// `base` scaled by a random factor in [0.5, 1.5).
pub(crate) fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = match getrandom::getrandom(&mut b) {
        Ok(()) => u16::from_le_bytes(b),
        Err(_) => (crate::now_ms() % 65536) as u16,
    };
    base.mul_f64(0.5 + f64::from(r) / 65536.0)
}
