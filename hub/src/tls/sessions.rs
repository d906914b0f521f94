//! MQTT-over-TLS connections by login, so that `device revoke` can close the ones a
//! revoked device holds (rumqttd cannot drop a client from outside).
//!
//! The terminator reads the client's first packet (CONNECT) before splicing, takes the
//! username from it ([`connect_username`], pure), forwards the bytes unchanged and
//! registers the connection; [`MqttSessions::close`] ends every connection of a login.
//! This module never judges a login (the broker does) and never changes a byte.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Largest first packet read before splicing; a bigger CONNECT is spliced unregistered.
pub const MAX_CONNECT_BYTES: usize = 16 * 1024;

/// Login → its open connections (id, closer).
type Open = HashMap<String, Vec<(u64, Arc<Notify>)>>;

/// Open connections per login; cheap to clone.
#[derive(Clone, Default)]
pub struct MqttSessions {
    open: Arc<Mutex<Open>>,
    next: Arc<AtomicU64>,
}

impl MqttSessions {
    /// Registers a connection of `user`; its `Notify` fires when it must close.
    pub fn register(&self, user: &str) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.entry(user.to_owned())
            .or_default()
            .push((id, notify.clone()));
        (id, notify)
    }

    pub fn unregister(&self, user: &str, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = open.get_mut(user) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                open.remove(user);
            }
        }
    }

    /// Closes every connection `user` holds through the terminator; how many.
    pub fn close(&self, user: &str) -> usize {
        let list = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user)
            .unwrap_or_default();
        for (_, n) in &list {
            // A stored permit: the connection closes even if it is not waiting yet.
            n.notify_one();
        }
        list.len()
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstPacket {
    /// Not all of the CONNECT yet.
    NeedMore,
    /// A CONNECT, with its username if it has one.
    Connect(Option<String>),
    /// Not a CONNECT we can read (the broker will refuse it).
    Other,
}

/// Reads an MQTT 3.1.1 or 5 CONNECT from the start of `buf`.
pub fn connect_username(buf: &[u8]) -> FirstPacket {
    let Some(&first) = buf.first() else {
        return FirstPacket::NeedMore;
    };
    if first != 0x10 {
        return FirstPacket::Other;
    }
    let Some((remaining, used)) = varint(&buf[1..]) else {
        return if buf.len() < 5 {
            FirstPacket::NeedMore
        } else {
            FirstPacket::Other
        };
    };
    let total = 1 + used + remaining;
    if total > MAX_CONNECT_BYTES {
        return FirstPacket::Other;
    }
    if buf.len() < total {
        return FirstPacket::NeedMore;
    }
    parse_connect(&buf[1 + used..total]).map_or(FirstPacket::Other, FirstPacket::Connect)
}

/// An MQTT variable byte integer: value and bytes used; None when unfinished or too long.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2)?;
        self.take(usize::from(u16::from_be_bytes([len[0], len[1]])))
    }

    fn properties(&mut self) -> Option<()> {
        let (len, used) = varint(self.0)?;
        self.take(used + len).map(drop)
    }
}

/// The CONNECT body: protocol, level, flags, keep-alive, [properties], client id,
/// [will properties, will topic, will payload], [username].
fn parse_connect(body: &[u8]) -> Option<Option<String>> {
    let mut c = Cursor(body);
    c.field()?;
    let level = c.u8()?;
    let flags = c.u8()?;
    c.take(2)?;
    if level == 5 {
        c.properties()?;
    }
    c.field()?;
    if flags & 0x04 != 0 {
        if level == 5 {
            c.properties()?;
        }
        c.field()?;
        c.field()?;
    }
    if flags & 0x80 == 0 {
        return Some(None);
    }
    let user = c.field()?;
    Some(Some(String::from_utf8(user.to_vec()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    fn connect(level: u8, will: bool, user: Option<&str>) -> Vec<u8> {
        let mut body = field(b"MQTT");
        body.push(level);
        let flags = 0x02 | if will { 0x04 } else { 0 } | if user.is_some() { 0xc0 } else { 0 };
        body.push(flags);
        body.extend_from_slice(&[0, 60]);
        if level == 5 {
            body.push(0);
        }
        body.extend(field(b"pi-1"));
        if will {
            if level == 5 {
                body.push(0);
            }
            body.extend(field(b"drover/v1/dev/pi-1/online"));
            body.extend(field(b"offline"));
        }
        if let Some(u) = user {
            body.extend(field(u.as_bytes()));
            body.extend(field(b"password"));
        }
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    }

    #[test]
    fn the_username_of_a_connect_is_read_in_3_1_1_and_5() {
        for level in [4, 5] {
            for will in [false, true] {
                let p = connect(level, will, Some("pi-1"));
                assert_eq!(
                    connect_username(&p),
                    FirstPacket::Connect(Some("pi-1".into()))
                );
                for cut in 0..p.len() {
                    assert_eq!(connect_username(&p[..cut]), FirstPacket::NeedMore, "{cut}");
                }
            }
        }
        assert_eq!(
            connect_username(&connect(4, false, None)),
            FirstPacket::Connect(None)
        );
        assert_eq!(connect_username(&[0x30, 0]), FirstPacket::Other);
        assert_eq!(
            connect_username(&[0x10, 0xff, 0xff, 0xff, 0x7f]),
            FirstPacket::Other
        );
    }

    #[test]
    fn close_ends_every_connection_of_a_login_only() {
        let s = MqttSessions::default();
        let (_, a) = s.register("pi-1");
        let (_, b) = s.register("pi-1");
        let (other, _) = s.register("pi-2");
        assert_eq!(s.close("pi-1"), 2);
        assert_eq!(s.close("pi-1"), 0);
        // The permits are stored: both waiters wake at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            a.notified().await;
            b.notified().await;
        });
        s.unregister("pi-2", other);
        assert_eq!(s.close("pi-2"), 0);
    }
}
