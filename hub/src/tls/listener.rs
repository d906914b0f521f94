//! TLS listeners: accept TCP, run each handshake in its own task with a timeout and a
//! bound on handshakes at once, and hand on only finished TLS streams — so one stalled
//! or hostile client never blocks the next (rumqttd's own TLS listener awaits every
//! handshake inside its accept loop).
//!
//! Two users: [`Incoming`] is an axum `Listener` (HTTPS for the API and registry), and
//! [`splice_to`] forwards each MQTT-over-TLS connection to the embedded broker's plain
//! loopback listener. This module must never pass on a connection whose handshake did
//! not complete.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::TlsError;
use crate::ratelimit::RateLimit;

/// A client has this long to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at most per listener; further connections wait in the
/// kernel's backlog until one ends (each ends within [`HANDSHAKE_TIMEOUT`]).
pub const MAX_HANDSHAKES: usize = 256;

/// Handshakes in progress at most per peer address: one host (a LAN attacker opening
/// hundreds of idle connections) can hold only this many of [`MAX_HANDSHAKES`]; its
/// further connections are closed at once. A site behind one NAT address still gets
/// this many handshakes at once (each takes milliseconds); agents retry with back-off.
pub const MAX_HANDSHAKES_PER_PEER: usize = 16;

/// Handshakes in progress per peer address.
#[derive(Debug, Default)]
pub struct PerPeer {
    open: std::collections::HashMap<IpAddr, usize>,
}

impl PerPeer {
    /// Counts one more handshake from `ip`, or `false` when it already has
    /// [`MAX_HANDSHAKES_PER_PEER`].
    pub fn start(&mut self, ip: IpAddr) -> bool {
        let n = self.open.entry(ip.to_canonical()).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_PEER {
            return false;
        }
        *n += 1;
        true
    }

    /// One handshake from `ip` ended (either way).
    pub fn end(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(n) = self.open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// Peers with a handshake in progress.
    pub fn peers(&self) -> usize {
        self.open.len()
    }
}

/// A finished TLS connection and its peer.
pub type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// Binds `addr` and starts accepting; finished connections arrive on the receiver.
pub async fn bind(
    what: &'static str,
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> Result<(mpsc::Receiver<Accepted>, SocketAddr), TlsError> {
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| TlsError::Bind { what, addr, source })?;
    let local = tcp
        .local_addr()
        .map_err(|source| TlsError::Bind { what, addr, source })?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(what, tcp, TlsAcceptor::from(config), tx));
    Ok((rx, local))
}

async fn accept_loop(
    what: &'static str,
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Accepted>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let warned = Arc::new(std::sync::Mutex::new(RateLimit::new(60_000)));
    let per_peer = Arc::new(std::sync::Mutex::new(PerPeer::default()));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(listener = what, "TLS accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let started = per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .start(peer.ip());
        if !started {
            let mut limit = warned.lock().unwrap_or_else(|e| e.into_inner());
            if limit.allow(&format!("busy {}", peer.ip()), crate::now_ms()) {
                tracing::warn!(listener = what, %peer, "closed a connection: {MAX_HANDSHAKES_PER_PEER} TLS handshakes from this address are already in progress (logged once a minute per address)");
            }
            continue; // drops `stream` (closed) and `permit`
        }
        let _ = stream.set_nodelay(true);
        let (acceptor, tx, warned) = (acceptor.clone(), tx.clone(), warned.clone());
        let per_peer = per_peer.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            per_peer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .end(peer.ip());
            let reason = match result {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            };
            let key = peer.ip().to_string();
            let mut limit = warned.lock().unwrap_or_else(|e| e.into_inner());
            if limit.allow(&key, crate::now_ms()) {
                tracing::warn!(listener = what, %peer, "TLS handshake failed (logged once a minute per address): {reason}");
            }
        });
    }
}

/// Finished TLS connections as an axum listener (the API and registry over HTTPS).
pub struct Incoming {
    pub rx: mpsc::Receiver<Accepted>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for Incoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(a) => a,
            // The accept loop never ends while this receiver lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Forwards every finished connection to `target` (the embedded broker's loopback
/// listener), bytes both ways, until either side closes or `sessions` closes its login
/// (`device revoke`).
pub async fn splice_to(
    mut rx: mpsc::Receiver<Accepted>,
    target: SocketAddr,
    sessions: super::sessions::MqttSessions,
) {
    while let Some((tls, peer)) = rx.recv().await {
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let plain = match TcpStream::connect(target).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, %target, "cannot reach the embedded broker: {e}");
                    return;
                }
            };
            let _ = plain.set_nodelay(true);
            if let Err(e) = splice_session(tls, plain, &sessions).await {
                tracing::debug!(%peer, "MQTT over TLS connection ended: {e}");
            }
        });
    }
}

/// Reads the CONNECT (bounded in size and time), forwards it, then splices; a connection
/// whose login is closed in `sessions` ends at once.
async fn splice_session(
    mut tls: TlsStream<TcpStream>,
    mut plain: TcpStream,
    sessions: &super::sessions::MqttSessions,
) -> std::io::Result<()> {
    use super::sessions::{FirstPacket, MAX_CONNECT_BYTES, connect_username};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::with_capacity(256);
    let user = loop {
        match connect_username(&buf) {
            FirstPacket::Connect(user) => break user,
            FirstPacket::Other => break None,
            FirstPacket::NeedMore if buf.len() >= MAX_CONNECT_BYTES => break None,
            FirstPacket::NeedMore => {}
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    plain.write_all(&buf).await?;
    let Some(user) = user else {
        return tokio::io::copy_bidirectional(&mut tls, &mut plain)
            .await
            .map(drop);
    };
    let (id, closed) = sessions.register(&user);
    let result = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut tls, &mut plain) => r.map(drop),
        () = closed.notified() => {
            tracing::info!(username = %user, "closed an MQTT over TLS connection: its login was revoked");
            Ok(())
        }
    };
    sessions.unregister(&user, id);
    result
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
