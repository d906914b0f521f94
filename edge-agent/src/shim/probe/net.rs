//! HTTP and TCP probes as non-blocking sockets the shim's poll loop drives: connect to
//! `127.0.0.1:port` of the network namespace the shim is in (the host's, or the pod's
//! after `setns`), then for `httpGet` send one `GET`, read at most [`MAX_RESPONSE`] bytes
//! and judge the status line (200–399 = success). `https` is TLS without certificate
//! verification, as Kubernetes does (rustls with ring, the stack registry pulls use).
//! Nothing here blocks, sleeps or keeps a socket beyond one run.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use drover_protocol::{HttpScheme, ProbeAction};
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use rustls::ClientConnection;

use super::state::Outcome;
use super::tls;

/// Most bytes of a response read before giving up on finding its status line.
pub const MAX_RESPONSE: usize = 4 * 1024;

/// One run of a `tcpSocket` or `httpGet` probe in flight.
pub struct NetCheck {
    stream: TcpStream,
    connected: bool,
    http: Option<Http>,
}

struct Http {
    request: Vec<u8>,
    sent: usize,
    response: Vec<u8>,
    tls: Option<ClientConnection>,
}

/// What a step of a run came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Pending,
    Done(Outcome),
}

fn failure(why: impl std::fmt::Display) -> Outcome {
    Outcome::Failure(why.to_string())
}

impl NetCheck {
    /// Starts a run of `action` (which must be `HttpGet` or `TcpSocket`); an error that
    /// ends it at once (no socket) is the run's outcome.
    pub fn start(action: &ProbeAction) -> Result<NetCheck, Outcome> {
        let (port, http) = match action {
            ProbeAction::TcpSocket { port } => (*port, None),
            ProbeAction::HttpGet {
                path,
                port,
                scheme,
                headers,
            } => {
                let tls = match scheme {
                    HttpScheme::Http => None,
                    HttpScheme::Https => Some(tls::client().map_err(failure)?),
                };
                let request = request(path, *port, headers);
                let (sent, response) = (0, Vec::new());
                let http = Http {
                    request,
                    sent,
                    response,
                    tls,
                };
                (*port, Some(http))
            }
            ProbeAction::Exec { .. } => return Err(failure("not a network probe")),
        };
        let stream = connect(port).map_err(|e| failure(format!("connect: {}", e.desc())))?;
        Ok(NetCheck {
            stream,
            connected: false,
            http,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// What to poll for.
    pub fn interest(&self) -> PollFlags {
        let out = match (&self.http, self.connected) {
            (_, false) => true,
            (None, true) => false,
            (Some(h), true) => match &h.tls {
                Some(conn) => conn.wants_write(),
                None => h.sent < h.request.len(),
            },
        };
        if out {
            PollFlags::POLLOUT | PollFlags::POLLIN
        } else {
            PollFlags::POLLIN
        }
    }

    /// Goes as far as the socket allows now.
    pub fn advance(&mut self) -> Step {
        if !self.connected {
            match socket::getsockopt(&self.stream, sockopt::SocketError) {
                Ok(0) => self.connected = true,
                Ok(e) => return Step::Done(failure(Errno::from_raw(e).desc())),
                Err(e) => return Step::Done(failure(e.desc())),
            }
        }
        let Some(http) = &mut self.http else {
            return Step::Done(Outcome::Success);
        };
        let io = match &mut http.tls {
            None => plain_exchange(&mut self.stream, http),
            Some(_) => tls_exchange(&mut self.stream, http),
        };
        match io {
            Err(e) => Step::Done(failure(e)),
            Ok(eof) => judge(&http.response, eof),
        }
    }
}

/// `GET path HTTP/1.1` with `Host` (unless the manifest sets one) and its headers.
fn request(path: &str, port: u16, headers: &[(String, String)]) -> Vec<u8> {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let mut r = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        r.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
    {
        r.push_str("User-Agent: drover-probe/1.0\r\n");
    }
    r.push_str("Accept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A non-blocking TCP connection to `127.0.0.1:port`, being established.
fn connect(port: u16) -> nix::Result<TcpStream> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = SockaddrIn::new(127, 0, 0, 1, port);
    match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e),
    }
}

/// Sends what is left of the request, reads what arrived; true at end of stream.
fn plain_exchange(stream: &mut TcpStream, h: &mut Http) -> Result<bool, String> {
    while h.sent < h.request.len() {
        match stream.write(&h.request[h.sent..]) {
            Ok(n) => h.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("sending the request: {e}")),
        }
    }
    read_into(stream, &mut h.response)
}

/// Reads until the socket would block, the end of stream or [`MAX_RESPONSE`] bytes.
fn read_into(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_RESPONSE {
        let room = (MAX_RESPONSE - buf.len()).min(chunk.len());
        match r.read(&mut chunk[..room]) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    Ok(true)
}

/// The TLS version of [`plain_exchange`]: the request was queued in the connection
/// before the handshake; records go out and come in as the socket allows.
fn tls_exchange(stream: &mut TcpStream, h: &mut Http) -> Result<bool, String> {
    let Some(conn) = &mut h.tls else {
        return Ok(true);
    };
    if h.sent == 0 {
        conn.writer()
            .write_all(&h.request)
            .map_err(|e| format!("TLS: {e}"))?;
        h.sent = h.request.len();
    }
    loop {
        while conn.wants_write() {
            match conn.write_tls(stream) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("TLS: sending: {e}")),
            }
        }
        let eof = match conn.read_tls(stream) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(format!("TLS: receiving: {e}")),
        };
        conn.process_new_packets()
            .map_err(|e| format!("TLS: {e}"))?;
        match read_into(&mut conn.reader(), &mut h.response) {
            Ok(true) => return Ok(true),
            Ok(false) if eof => return Ok(true),
            Ok(false) => {}
            // The peer closed without close_notify: what arrived is all there is.
            Err(_) if eof => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

/// The outcome once the status line is in (or the stream ended without one).
fn judge(response: &[u8], eof: bool) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let parsed = resp.parse(response);
    match (resp.code, parsed) {
        (Some(code), _) if (200..400).contains(&code) => Step::Done(Outcome::Success),
        (Some(code), _) => Step::Done(failure(format!("HTTP {code}"))),
        (None, Err(e)) => Step::Done(failure(format!("not an HTTP response: {e}"))),
        (None, Ok(_)) if eof => Step::Done(failure(if response.is_empty() {
            "connection closed without a response".to_owned()
        } else {
            "connection closed within the status line".to_owned()
        })),
        (None, Ok(_)) => Step::Pending,
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
