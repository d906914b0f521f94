//! The async shell of the hub link: two tasks around one rumqttc client.
//!
//! `Receiver` owns the `EventLoop` and is the only one to poll it (a poll is never
//! cancelled mid-write); it handles connects, back-off and desired states. `Sender` turns
//! queued status snapshots, heartbeats and telemetry samples into `try_publish` calls
//! while connected. Neither ever awaits the MQTT request channel: a full channel leaves
//! the snapshot or sample queued.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use drover_protocol::freshness::{seal_presence_keyed, seal_status_seq_keyed};
use drover_protocol::keys::StatusKey;
use drover_protocol::keys::{self, SealSecret};
use drover_protocol::telemetry::seal_telemetry_keyed;
use drover_protocol::{DeviceStatus, MAX_MQTT_PACKET_BYTES, topics};
use ed25519_dalek::VerifyingKey;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};

use super::backoff::{Backoff, random_u32};
use super::config::{HubConfig, HubConfigError};
use super::decide::{Decision, RateLimit, decide};
use super::{HubEvent, Shared};
use crate::fsutil::now_ms;

/// MQTT keep-alive. rumqttc sends a PINGREQ every keep-alive even while other packets
/// flow, so on an idle device it costs a ping and the ACK of its answer per period
/// (0.036 kbit/s at 30 s, measured: bench/agent-telemetry.sh). At 60 s a dead link is
/// still noticed within about two minutes, and a broker fires the presence will after
/// 90 s (1.5 × keep-alive), within the hub's `offline_after` (150 s).
const KEEP_ALIVE: Duration = Duration::from_secs(60);
const WARN_PERIOD: Duration = Duration::from_secs(60);
/// Pause before retrying when the MQTT request channel was full.
const CHANNEL_RETRY: Duration = Duration::from_millis(200);

pub(super) struct Receiver {
    eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    events: mpsc::Sender<HubEvent>,
    key: VerifyingKey,
    /// This device's X25519 secret (derived from the credential): opens sealed states.
    seal: SealSecret,
    broker: String,
    desired_topic: String,
    cmd_topic: String,
    online_topic: String,
    /// The key presence is authenticated with (`HubConfig::status_key`).
    status_key: StatusKey,
    /// Sequence number of the `online` to send at the next ConnAck; the last will set for
    /// that connection carries the one after it.
    online_seq: u64,
    backoff: Backoff,
    warned: RateLimit,
    ever_connected: bool,
}

pub(super) struct Sender {
    client: AsyncClient,
    shared: Arc<Shared>,
    status_key: StatusKey,
    heartbeat: Duration,
    status_topic: String,
    telemetry_topic: String,
}

/// Sets up the client and the two halves of the link (nothing is connected yet).
pub(super) fn build(
    cfg: &HubConfig,
    telemetry_queue: u32,
    shared: Arc<Shared>,
    events: mpsc::Sender<HubEvent>,
) -> Result<(Receiver, Sender), HubConfigError> {
    let (host, port) = cfg.broker_addr()?;
    let device = shared.device.to_string();
    let online_topic = topics::online(&shared.device);
    let mut opts = MqttOptions::new(device.clone(), host, port);
    let online_seq = shared.take_seq(2);
    let status_key = cfg.status_key()?;
    // Only the derived MQTT password is sent, never the credential (`keys`).
    opts.set_credentials(device, keys::mqtt_password(cfg.credential.as_bytes()))
        .set_clean_session(true)
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MQTT_PACKET_BYTES)
        .set_last_will(last_will(&shared, &status_key, online_seq + 1));
    if let Some(tls) = cfg.mqtt_tls()? {
        // Only the fleet CA is trusted: a broker with any other certificate is refused.
        opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            tls,
        )));
    }
    // Room for `online` + subscribe + a full flush of both offline queues.
    let capacity = cfg.status_queue as usize + telemetry_queue as usize + 8;
    let (client, mut eventloop) = AsyncClient::new(opts, capacity);
    // A status is one small packet that should leave now, not after the broker's delayed
    // ACK of the previous one (Nagle's algorithm added ~40 ms to every acknowledgement).
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let receiver = Receiver {
        eventloop,
        client: client.clone(),
        key: cfg.verifying_key()?,
        seal: SealSecret::derive(cfg.credential.as_bytes()),
        broker: cfg.broker.clone(),
        desired_topic: topics::desired(&shared.device),
        cmd_topic: topics::cmd(&shared.device),
        online_topic,
        status_key: status_key.clone(),
        online_seq,
        events,
        backoff: Backoff::default(),
        warned: RateLimit::new(WARN_PERIOD),
        ever_connected: false,
        shared: shared.clone(),
    };
    let sender = Sender {
        client,
        status_key,
        heartbeat: cfg.heartbeat.as_duration(),
        status_topic: topics::status(&shared.device),
        telemetry_topic: topics::telemetry(&shared.device),
        shared,
    };
    Ok((receiver, sender))
}

impl Receiver {
    /// Polls the event loop forever; returns only when the daemon dropped its receiver.
    pub(super) async fn run(mut self) {
        loop {
            let event = self.eventloop.poll().await;
            let alive = match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => self.on_connected().await,
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == self.desired_topic => {
                    self.on_desired(&p.payload).await
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == self.cmd_topic => {
                    // Never waits: a flood on the topic must not stall the link.
                    let ev = HubEvent::Command {
                        payload: p.payload.to_vec(),
                    };
                    !matches!(self.events.try_send(ev), Err(TrySendError::Closed(_)))
                }
                Ok(_) => true,
                Err(e) => self.on_error(e).await,
            };
            if !alive {
                debug!(device = %self.shared.device, "hub link stopped: the daemon is gone");
                return;
            }
        }
    }

    async fn on_connected(&mut self) -> bool {
        self.backoff.reset();
        // The request channel is empty here (rumqttc drops the old session's requests on
        // a clean-session ConnAck), so these cannot find it full.
        // Encoding a few bytes cannot fail; the plain form is the older agents' one.
        let presence =
            seal_presence_keyed(&self.shared.device, true, self.online_seq, &self.status_key)
                .unwrap_or_else(|_| b"online".to_vec());
        let online = self
            .client
            .try_publish(&self.online_topic, QoS::AtLeastOnce, true, presence);
        let sub = self
            .client
            .try_subscribe(&self.desired_topic, QoS::AtLeastOnce);
        let cmd = self.client.try_subscribe(&self.cmd_topic, QoS::AtLeastOnce);
        if let Err(e) = online.and(sub).and(cmd) {
            warn!(device = %self.shared.device, "cannot announce presence or subscribe: {e}");
        }
        {
            let mut st = self.shared.lock();
            st.connected = true;
            st.resend_latest = true;
            st.stats.connected = true;
            if self.ever_connected {
                st.stats.reconnects += 1;
            }
        }
        self.ever_connected = true;
        self.shared.wake.notify_one();
        info!(device = %self.shared.device, broker = %self.broker, "connected to the hub broker");
        self.events.send(HubEvent::Connected).await.is_ok()
    }

    async fn on_desired(&mut self, payload: &[u8]) -> bool {
        let held = self.shared.held.load(Ordering::SeqCst);
        match decide(payload, &self.key, &self.seal, &self.shared.device, held) {
            Decision::Accept(state) => {
                self.shared
                    .held
                    .fetch_max(state.generation, Ordering::SeqCst);
                info!(device = %self.shared.device, generation = state.generation, held,
                    "received a new desired state");
                let ev = HubEvent::Desired {
                    state,
                    payload: payload.to_vec(),
                };
                self.events.send(ev).await.is_ok()
            }
            Decision::Ignore => true,
            Decision::Reject { reason, error } => {
                {
                    let mut st = self.shared.lock();
                    st.stats.rejected_desired += 1;
                    *st.stats
                        .rejected_by_reason
                        .entry(reason.to_owned())
                        .or_default() += 1;
                }
                if let Some(suppressed) = self.warned.allow(reason, std::time::Instant::now()) {
                    warn!(device = %self.shared.device, reason, held, suppressed,
                        "rejected desired state: {error}");
                }
                true
            }
        }
    }

    /// Marks the link down, logs the change once, and waits out the back-off.
    async fn on_error(&mut self, e: ConnectionError) -> bool {
        let was_connected = {
            let mut st = self.shared.lock();
            st.stats.connected = false;
            std::mem::replace(&mut st.connected, false)
        };
        let delay = self.backoff.next_delay(random_u32());
        let failures = self.backoff.failures();
        let device = &self.shared.device;
        let mut alive = true;
        if was_connected {
            warn!(device = %device, broker = %self.broker, "lost the hub broker: {e}");
            alive = self.events.send(HubEvent::Disconnected).await.is_ok();
        } else if failures == 1 {
            warn!(device = %device, broker = %self.broker, "cannot reach the hub broker: {e}");
        } else {
            debug!(device = %device, failures, delay_ms = delay.as_millis() as u64,
                "hub broker still unreachable: {e}");
        }
        // The next connection announces itself with fresh sequence numbers: its `online`,
        // and above it the last will the broker publishes if that connection dies.
        self.online_seq = self.shared.take_seq(2);
        let will = last_will(&self.shared, &self.status_key, self.online_seq + 1);
        self.eventloop.mqtt_options.set_last_will(will);
        sleep(delay).await;
        alive
    }
}

/// The `offline` presence the broker publishes (retained) when the connection dies,
/// sealed with sequence number `seq`.
fn last_will(shared: &Shared, key: &StatusKey, seq: u64) -> LastWill {
    let payload = seal_presence_keyed(&shared.device, false, seq, key)
        .unwrap_or_else(|_| b"offline".to_vec());
    LastWill::new(
        topics::online(&shared.device),
        payload,
        QoS::AtLeastOnce,
        true,
    )
}

impl Sender {
    /// The MQTT client, for answers to commands.
    pub(super) fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Sends queued snapshots and heartbeats; ends when the receiver ends (aborted).
    pub(super) async fn run(self) {
        let mut last_sent = Instant::now();
        let mut retry_at: Option<Instant> = None;
        loop {
            let due = retry_at.unwrap_or(last_sent + self.heartbeat);
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = sleep_until(due) => {}
            }
            retry_at = None;
            let heartbeat_due = Instant::now() >= last_sent + self.heartbeat;
            match self.send_pending(heartbeat_due) {
                Flush::Sent => last_sent = Instant::now(),
                Flush::Idle => {}
                Flush::Offline if heartbeat_due => last_sent = Instant::now(),
                Flush::Offline => {}
                Flush::ChannelFull => retry_at = Some(Instant::now() + CHANNEL_RETRY),
            }
            // Statuses first: they are the hub's source of truth, telemetry is QoS 0.
            if matches!(self.send_telemetry(), Flush::ChannelFull) {
                retry_at.get_or_insert(Instant::now() + CHANNEL_RETRY);
            }
        }
    }

    /// Hands every queued telemetry sample to the client, oldest first; a sample leaves
    /// the queue only once the client took it.
    fn send_telemetry(&self) -> Flush {
        let mut sent = false;
        let mut st = self.shared.lock();
        while st.connected {
            let Some(sample) = st.telemetry.front() else {
                break;
            };
            let payload = match seal_telemetry_keyed(sample, &self.shared.device, &self.status_key)
            {
                Ok(p) => p,
                Err(e) => {
                    // Encoding cannot fail in practice; drop it rather than retry forever.
                    warn!(device = %self.shared.device, "cannot encode telemetry: {e}");
                    st.telemetry.pop();
                    continue;
                }
            };
            // try_publish never waits: holding the (sync) lock across it is fine.
            if self
                .client
                .try_publish(&self.telemetry_topic, QoS::AtMostOnce, false, payload)
                .is_err()
            {
                return Flush::ChannelFull;
            }
            st.telemetry.pop();
            st.stats.published_telemetry += 1;
            sent = true;
        }
        match (st.connected, sent) {
            (false, _) => Flush::Offline,
            (true, true) => Flush::Sent,
            (true, false) => Flush::Idle,
        }
    }

    /// Hands every queued snapshot to the client, or the latest one again when a heartbeat
    /// is due or the link just connected.
    fn send_pending(&self, heartbeat_due: bool) -> Flush {
        let mut sent = false;
        loop {
            let next = {
                let mut st = self.shared.lock();
                if !st.connected {
                    return Flush::Offline;
                }
                match st.queue.pop() {
                    Some(s) => Some(s),
                    None if st.resend_latest || (heartbeat_due && !sent) => {
                        st.latest.clone().map(|mut s| {
                            s.time_ms = now_ms();
                            s
                        })
                    }
                    None => None,
                }
            };
            let Some(status) = next else { break };
            if !self.try_send(&status) {
                let mut st = self.shared.lock();
                if st.queue.unpop(status) {
                    st.stats.dropped_status += 1;
                }
                return Flush::ChannelFull;
            }
            let mut st = self.shared.lock();
            st.resend_latest = false;
            st.stats.published_status += 1;
            sent = true;
        }
        if sent { Flush::Sent } else { Flush::Idle }
    }

    /// Seals and hands over one snapshot; false when the request channel is full.
    fn try_send(&self, status: &DeviceStatus) -> bool {
        let seq = self.shared.take_seq(1);
        let payload = match seal_status_seq_keyed(status, seq, &self.status_key) {
            Ok(p) => p,
            Err(e) => {
                // Encoding a status cannot fail in practice; drop it rather than retry forever.
                warn!(device = %self.shared.device, "cannot encode status: {e}");
                return true;
            }
        };
        self.client
            .try_publish(&self.status_topic, QoS::AtLeastOnce, false, payload)
            .is_ok()
    }
}

enum Flush {
    Sent,
    Idle,
    Offline,
    ChannelFull,
}
