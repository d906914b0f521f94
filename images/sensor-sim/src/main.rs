//! `sensor-sim`: an example Drover workload that publishes simulated temperature and
//! humidity readings as JSON to an MQTT broker every few seconds, and prints each one.
//!
//! Configured only by environment (`MQTT_BROKER`, `MQTT_USERNAME`, `MQTT_PASSWORD`,
//! `MQTT_TOPIC`, `INTERVAL`, `DEVICE`). It never exits on broker errors: it reconnects
//! with back-off, so it must never be used where losing readings matters (QoS 0).

mod mqtt;
mod reading;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static STOP: AtomicBool = AtomicBool::new(false);
const KEEP_ALIVE: u16 = 60;

struct Config {
    broker: String,
    username: Option<String>,
    password: Option<String>,
    client_id: String,
    topic: String,
    device: String,
    interval: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
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
    kernel_hostname().unwrap_or_else(|| "sensor".to_string())
}

/// `5`, `5s`, `500ms`, `2m` → a Duration (at least 100 ms).
fn parse_interval(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs.max(0.1)))
}

fn config() -> Result<Config, String> {
    let device = env("DEVICE").unwrap_or_else(hostname);
    let interval = match env("INTERVAL") {
        Some(s) => parse_interval(&s).ok_or_else(|| format!("bad INTERVAL {s:?}"))?,
        None => Duration::from_secs(5),
    };
    let username = env("MQTT_USERNAME");
    let client_id = username
        .clone()
        .unwrap_or_else(|| format!("sensor-sim-{device}"));
    Ok(Config {
        broker: env("MQTT_BROKER").unwrap_or_else(|| "127.0.0.1:1883".to_string()),
        password: env("MQTT_PASSWORD"),
        topic: env("MQTT_TOPIC").unwrap_or_else(|| format!("drover/v1/sensors/{device}/readings")),
        username,
        client_id,
        device,
        interval,
    })
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGTERM/SIGINT set STOP (as PID 1 in a container the default action would be ignored).
fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sleeps up to `d` in short slices, returning early on STOP.
fn sleep_unless_stopped(d: Duration) {
    let end = Instant::now() + d;
    while !STOP.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(200)));
    }
}

/// Publishes until the connection fails or STOP is set.
fn run_session(
    cfg: &Config,
    client: &mut mqtt::Client,
    sensor: &mut reading::Sensor,
) -> std::io::Result<()> {
    let mut last_sent = Instant::now();
    let mut next = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next {
            sensor.step();
            let json = sensor.json(&cfg.device, unix_secs());
            client.publish(&cfg.topic, json.as_bytes())?;
            println!("{} {json}", cfg.topic);
            last_sent = now;
            next += cfg.interval;
        } else if now - last_sent >= Duration::from_secs(u64::from(KEEP_ALIVE) / 2) {
            client.ping()?;
            last_sent = now;
        }
        client.drain((next - Instant::now().min(next)).min(Duration::from_millis(500)))?;
    }
    Ok(())
}

fn main() {
    let cfg = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sensor-sim: {e}");
            std::process::exit(2);
        }
    };
    install_signal_handlers();
    let seed = unix_secs() ^ u64::from(std::process::id()) << 32;
    let mut sensor = reading::Sensor::new(seed);
    let opts = mqtt::ConnectOptions {
        client_id: &cfg.client_id,
        username: cfg.username.as_deref(),
        password: cfg.password.as_deref(),
        keep_alive_secs: KEEP_ALIVE,
    };
    eprintln!(
        "sensor-sim: device {} → {} on {} every {:?}",
        cfg.device, cfg.topic, cfg.broker, cfg.interval
    );
    let mut backoff = Duration::from_secs(1);
    while !STOP.load(Ordering::SeqCst) {
        match mqtt::Client::connect(&cfg.broker, &opts) {
            Ok(mut client) => {
                eprintln!(
                    "sensor-sim: connected to {} as {}",
                    cfg.broker, cfg.client_id
                );
                backoff = Duration::from_secs(1);
                match run_session(&cfg, &mut client, &mut sensor) {
                    Ok(()) => client.disconnect(),
                    Err(e) => {
                        eprintln!("sensor-sim: connection lost: {e}");
                        sleep_unless_stopped(Duration::from_secs(1));
                    }
                }
            }
            Err(e) => {
                eprintln!(
                    "sensor-sim: connecting to {}: {e}; retrying in {backoff:?}",
                    cfg.broker
                );
                sleep_unless_stopped(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    eprintln!("sensor-sim: stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_interval("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_interval("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_interval("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_interval("abc"), None);
        assert_eq!(parse_interval("5h"), None);
    }
}
