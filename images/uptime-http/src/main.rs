//! `uptime-http`: an example Drover workload, a tiny HTTP/1.1 server on `std` that answers
//! `GET /` with `{"uptime_seconds":…,"hostname":…}` and `GET /healthz` with 200, and prints
//! one line per request.
//!
//! One request per connection, one thread per connection, 8 KiB request limit. It must
//! never be exposed as a real web server: it is demo code.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const MAX_HEAD: u64 = 8 * 1024;

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// As PID 1 in a container SIGTERM would be ignored by default: exit on it instead.
fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only calls _exit.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The kernel's hostname (uname), so it works without /proc mounted.
fn kernel_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0)?;
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (rc == 0 && !name.is_empty()).then_some(name)
}

fn hostname() -> String {
    kernel_hostname().unwrap_or_default()
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Status, content type and body for a request line's method and path.
pub fn route(method: &str, path: &str, uptime: Duration) -> (u16, &'static str, String) {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET" | "HEAD", "/") => {
            let body = format!(
                "{{\"uptime_seconds\":{},\"hostname\":\"{}\"}}\n",
                uptime.as_secs(),
                json_escape(&hostname())
            );
            (200, "application/json", body)
        }
        ("GET" | "HEAD", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET" | "HEAD", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "method not allowed\n".to_string()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    }
}

fn handle(stream: TcpStream, started: Instant) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut reader = BufReader::new((&stream).take(MAX_HEAD));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Skip the headers: this server has no use for them.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let (status, ctype, body) = if path.is_empty() {
        (400, "text/plain", "bad request\n".to_string())
    } else {
        route(method, path, started.elapsed())
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let mut w = &stream;
    w.write_all(head.as_bytes())?;
    if method != "HEAD" {
        w.write_all(body.as_bytes())?;
    }
    println!("{peer} {method} {path} {status}");
    Ok(())
}

fn main() {
    install_signal_handlers();
    let started = Instant::now();
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("uptime-http: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("uptime-http: listening on 0.0.0.0:{port}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = handle(stream, started) {
                        eprintln!("uptime-http: {e}");
                    }
                });
            }
            Err(e) => eprintln!("uptime-http: accept: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let (s, t, b) = route("GET", "/", Duration::from_secs(42));
        assert_eq!((s, t), (200, "application/json"));
        assert!(
            b.starts_with("{\"uptime_seconds\":42,\"hostname\":\""),
            "{b}"
        );
        assert_eq!(route("GET", "/healthz", Duration::ZERO).0, 200);
        assert_eq!(route("GET", "/healthz?x=1", Duration::ZERO).0, 200);
        assert_eq!(route("GET", "/nope", Duration::ZERO).0, 404);
        assert_eq!(route("POST", "/", Duration::ZERO).0, 405);
    }

    #[test]
    fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            handle(s, Instant::now()).expect("handle");
        });
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut resp = String::new();
        c.read_to_string(&mut resp).expect("read");
        t.join().expect("join");
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\nok\n"), "{resp}");
    }
}
