//! A minimal MQTT 3.1.1 client over a blocking `std` TcpStream: CONNECT (clean session,
//! optional username/password), PUBLISH at QoS 0, PINGREQ and DISCONNECT.
//!
//! It exists so that the example image stays a few hundred KiB. It must never grow QoS 1/2,
//! subscriptions or TLS: a real workload should use a real client library.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH_QOS0: u8 = 0x30;
const PINGREQ: u8 = 0xC0;
const DISCONNECT: u8 = 0xE0;

/// Credentials and session settings of one connection.
pub struct ConnectOptions<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub keep_alive_secs: u16,
}

/// Appends the MQTT "remaining length" variable-length integer.
pub fn encode_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    encode_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// The bytes of a CONNECT packet (protocol level 4 = 3.1.1, clean session).
pub fn encode_connect(opts: &ConnectOptions<'_>) -> Vec<u8> {
    let mut flags = 0x02;
    if opts.username.is_some() {
        flags |= 0x80;
    }
    if opts.password.is_some() {
        flags |= 0x40;
    }
    let mut body = Vec::new();
    push_str(&mut body, b"MQTT");
    body.push(4);
    body.push(flags);
    body.extend_from_slice(&opts.keep_alive_secs.to_be_bytes());
    push_str(&mut body, opts.client_id.as_bytes());
    for field in [opts.username, opts.password].into_iter().flatten() {
        push_str(&mut body, field.as_bytes());
    }
    packet(CONNECT, &body)
}

/// The bytes of a QoS 0 PUBLISH packet (no packet id at QoS 0).
pub fn encode_publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + topic.len() + payload.len());
    push_str(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    packet(PUBLISH_QOS0, &body)
}

/// Why the broker refused a CONNECT (CONNACK return codes 1..5).
pub fn connack_error(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown CONNACK return code",
    }
}

/// One open MQTT connection.
pub struct Client {
    stream: TcpStream,
}

impl Client {
    /// Connects, sends CONNECT and waits (up to 10 s) for a successful CONNACK.
    pub fn connect(addr: &str, opts: &ConnectOptions<'_>) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&encode_connect(opts))?;
        let mut ack = [0u8; 4];
        stream.read_exact(&mut ack)?;
        if ack[0] != CONNACK || ack[1] != 2 {
            return Err(io::Error::other("broker did not answer with CONNACK"));
        }
        if ack[3] != 0 {
            let msg = format!("broker refused connection: {}", connack_error(ack[3]));
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, msg));
        }
        Ok(Self { stream })
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&encode_publish(topic, payload))
    }

    pub fn ping(&mut self) -> io::Result<()> {
        self.stream.write_all(&[PINGREQ, 0])
    }

    /// Waits up to `timeout` for incoming bytes (PINGRESP) and discards them; an error
    /// means the connection is gone.
    pub fn drain(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "broker closed the connection",
            )),
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn disconnect(mut self) {
        let _ = self.stream.write_all(&[DISCONNECT, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_bytes(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        encode_remaining_length(&mut v, n);
        v
    }

    #[test]
    fn remaining_length_matches_the_spec_table() {
        assert_eq!(len_bytes(0), [0x00]);
        assert_eq!(len_bytes(127), [0x7F]);
        assert_eq!(len_bytes(128), [0x80, 0x01]);
        assert_eq!(len_bytes(16_383), [0xFF, 0x7F]);
        assert_eq!(len_bytes(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(len_bytes(268_435_455), [0xFF, 0xFF, 0xFF, 0x7F]);
    }

    #[test]
    fn connect_with_credentials() {
        let opts = ConnectOptions {
            client_id: "dev1",
            username: Some("dev1"),
            password: Some("pw"),
            keep_alive_secs: 60,
        };
        let mut want = vec![0x10, 26, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
        want.extend_from_slice(&[0, 4, b'd', b'e', b'v', b'1']);
        want.extend_from_slice(&[0, 4, b'd', b'e', b'v', b'1']);
        want.extend_from_slice(&[0, 2, b'p', b'w']);
        assert_eq!(encode_connect(&opts), want);
    }

    #[test]
    fn connect_anonymous() {
        let opts = ConnectOptions {
            client_id: "x",
            username: None,
            password: None,
            keep_alive_secs: 30,
        };
        let want = [
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 1, b'x',
        ];
        assert_eq!(encode_connect(&opts), want);
    }

    #[test]
    fn publish_qos0() {
        assert_eq!(
            encode_publish("a/b", b"hi"),
            [0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']
        );
        let long = encode_publish("t", &[7u8; 200]);
        assert_eq!(&long[..5], &[0x30, 0xCB, 0x01, 0, 1]);
        assert_eq!(long.len(), 3 + 203);
    }
}
