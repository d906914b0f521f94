//! A real `drover-hub serve` process on free ports and a private data folder, an
//! optional real Mosquitto broker, and the hub CLI as the tests call it.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::{bin, wait_for};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct TestHub {
    pub dir: TempDir,
    pub config: PathBuf,
    pub api: String,
    pub broker_port: u16,
    /// With [`TestHub::with_tls`]: the MQTT-over-TLS and HTTPS ports (127.0.0.1).
    pub tls_ports: Option<(u16, u16)>,
    child: Option<Child>,
    runs: u32,
}

impl Default for TestHub {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHub {
    /// A stopped hub with the embedded broker on a free port.
    pub fn new() -> TestHub {
        Self::build(None, false)
    }

    /// A stopped hub whose devices are told to use TLS: MQTT over TLS and HTTPS on free
    /// loopback ports, advertised as `mqtts://127.0.0.1:…` and `https://127.0.0.1:…`.
    pub fn with_tls() -> TestHub {
        Self::build(None, true)
    }

    /// A stopped hub that uses an external broker at 127.0.0.1:`port` (e.g. Mosquitto).
    pub fn with_external_broker(port: u16) -> TestHub {
        Self::build(Some(port), false)
    }

    fn build(external: Option<u16>, tls: bool) -> TestHub {
        let dir = tempfile::Builder::new()
            .prefix("drover-hub-")
            .tempdir()
            .expect("tempdir");
        let (api_port, broker_port) = (free_port(), external.unwrap_or_else(free_port));
        let tls_ports = tls.then(|| (free_port(), free_port()));
        // TLS listeners are on by default (0.0.0.0:8883, :7443): off here unless asked,
        // so that hubs in parallel tests do not fight over the ports.
        let (api_tls, broker_tls) = match tls_ports {
            Some((m, h)) => (
                format!("tls_listen = \"127.0.0.1:{h}\"\nadvertise = \"https://127.0.0.1:{h}\"\n"),
                format!("tls_listen = \"127.0.0.1:{m}\"\nadvertise = \"mqtts://127.0.0.1:{m}\"\n"),
            ),
            None => (
                "tls_listen = \"\"\n".to_owned(),
                format!("tls_listen = \"\"\nadvertise = \"127.0.0.1:{broker_port}\"\n"),
            ),
        };
        let broker = match external {
            Some(p) => format!("url = \"127.0.0.1:{p}\"\n"),
            None => format!("listen = \"127.0.0.1:{broker_port}\"\n{broker_tls}"),
        };
        let config = dir.path().join("hub.toml");
        let toml = format!(
            "data_dir = \"{}\"\nlog_level = \"info,drover_hub=debug\"\noffline_after = \"10s\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n{api_tls}[broker]\n{broker}",
            dir.path().join("data").display()
        );
        fs::write(&config, toml).expect("hub config");
        let api = format!("http://127.0.0.1:{api_port}");
        TestHub {
            dir,
            config,
            api,
            broker_port,
            tls_ports,
            child: None,
            runs: 0,
        }
    }

    /// Appends lines to the hub's config file (takes effect at the next start), e.g. a
    /// `[dashboards]` table.
    pub fn append_config(&self, text: &str) {
        let mut toml = fs::read_to_string(&self.config).expect("hub config");
        toml.push_str(text);
        fs::write(&self.config, toml).expect("hub config");
    }

    /// Registers a dashboard client (`client add NAME [ARGS]`); returns its credential.
    pub fn client_add(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["client", "add", name, "-o", "json"];
        all.extend(args);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "client add {name}: {err}");
        let v: Value = serde_json::from_str(&out).expect("client add json");
        v["credential"].as_str().expect("credential").to_string()
    }

    /// Starts `drover-hub serve` and waits until its API answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "hub already running");
        self.runs += 1;
        let log =
            fs::File::create(self.dir.path().join(format!("hub-{}.log", self.runs))).expect("log");
        let child = Command::new(bin("drover-hub"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn drover-hub");
        self.child = Some(child);
        wait_for("the hub API", Duration::from_secs(30), || {
            (self.cli(&["get", "devices"]).0 == 0).then_some(())
        });
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// SIGKILL and wait: a crash, as a power cut or the OOM killer would leave it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `drover-hub --api URL` with `DROVER_HUB_CONFIG` set to this hub's config, so that
    /// the CLI finds the admin token in the data folder as it does on a hub's machine;
    /// add the arguments and run it.
    pub fn cli_command(&self) -> Command {
        let mut c = Command::new(bin("drover-hub"));
        c.env("DROVER_HUB_CONFIG", &self.config)
            .env_remove("DROVER_HUB_TOKEN")
            .arg("--api")
            .arg(&self.api);
        c
    }

    /// `drover-hub --api URL ARGS` as [`TestHub::cli_command`]: (exit code, stdout,
    /// stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cli_command().args(args).output().expect("hub cli");
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            s(&out.stdout),
            s(&out.stderr),
        )
    }

    /// The hub's data folder (`data_dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin token the hub created at its first start (`data_dir/api.token`).
    pub fn admin_token(&self) -> String {
        self.token_file("api.token")
    }

    /// The read-only token the hub created at its first start (`data_dir/read.token`).
    pub fn read_token(&self) -> String {
        self.token_file("read.token")
    }

    fn token_file(&self, name: &str) -> String {
        let path = self.data_dir().join(name);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} (is the hub started?): {e}", path.display()));
        text.trim().to_owned()
    }

    /// `Authorization: Bearer ADMIN-TOKEN`, as a raw header line for HTTP tests.
    pub fn admin_header(&self) -> String {
        format!("Authorization: Bearer {}", self.admin_token())
    }

    /// Writes `yaml` to a file in the hub's folder and applies it: (code, stdout, stderr).
    pub fn apply(&self, file: &str, yaml: &str) -> (i32, String, String) {
        let path = self.dir.path().join(file);
        fs::write(&path, yaml).expect("write manifest");
        self.cli(&["apply", "-f", &path.display().to_string()])
    }

    /// Registers a device; returns the agent config snippet (TOML) for it.
    pub fn device_add(&self, name: &str, labels: &[&str]) -> String {
        let mut args = vec!["device", "add", name, "-o", "json"];
        for l in labels {
            args.extend(["--label", l]);
        }
        let (code, out, err) = self.cli(&args);
        assert_eq!(code, 0, "device add {name}: {err}");
        let v: Value = serde_json::from_str(&out).expect("device add json");
        v["config"].as_str().expect("config snippet").to_string()
    }

    /// `get devices -o json`.
    pub fn devices(&self) -> Value {
        let (code, out, err) = self.cli(&["get", "devices", "-o", "json"]);
        assert_eq!(code, 0, "get devices: {err}");
        serde_json::from_str(&out).expect("devices json")
    }

    /// The hub's logs so far, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                fs::read_to_string(self.dir.path().join(format!("hub-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- hub restarted ---\n")
    }
}

impl TestHub {
    /// The arguments of `mosquitto_pub` / `mosquitto_sub` that reach this hub's broker as
    /// login `user` (client id = user name) with password `cred` (for a device: its
    /// [`device_password`]).
    pub fn mqtt_login(&self, user: &str, cred: &str) -> Vec<String> {
        let port = self.broker_port.to_string();
        [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-i",
            user,
            "-u",
            user,
            "-P",
            cred,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `mosquitto_pub` of `payload` on `topic` (QoS 1) to this hub's broker, logged in as
    /// `user` (client id = user name) with `cred`: what any device or client could send.
    pub fn mqtt_publish(&self, user: &str, cred: &str, topic: &str, payload: &[u8]) {
        let file = self.dir.path().join("payload.bin");
        fs::write(&file, payload).expect("write payload");
        let st = Command::new("mosquitto_pub")
            .args(self.mqtt_login(user, cred))
            .args(["-q", "1", "-t", topic, "-f"])
            .arg(&file)
            .status()
            .expect("mosquitto_pub (apt-get install mosquitto-clients)");
        assert!(st.success(), "mosquitto_pub failed");
    }

    /// Publishes `payload` as the retained message of `topic` (an empty one deletes it,
    /// `mosquitto_pub -r -n`), logged in as `user`.
    pub fn mqtt_publish_retained(&self, user: &str, cred: &str, topic: &str, payload: &[u8]) {
        let file = self.dir.path().join("payload.bin");
        fs::write(&file, payload).expect("write payload");
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(self.mqtt_login(user, cred))
            .args(["-q", "1", "-r", "-t", topic]);
        if payload.is_empty() {
            cmd.arg("-n");
        } else {
            cmd.arg("-f").arg(&file);
        }
        let st = cmd
            .status()
            .expect("mosquitto_pub (apt-get install mosquitto-clients)");
        assert!(st.success(), "mosquitto_pub -r failed");
    }

    /// `get stats -o json`: the hub's counters.
    pub fn stats(&self) -> Value {
        let (code, out, err) = self.cli(&["get", "stats", "-o", "json"]);
        assert_eq!(code, 0, "get stats: {err}");
        serde_json::from_str(&out).expect("stats json")
    }

    /// Waits (up to 30 s) until the counter `key` of `get stats` is `want`.
    pub fn wait_stat(&self, key: &str, want: u64) {
        wait_for(&format!("{key} = {want}"), Duration::from_secs(30), || {
            (self.stats()[key].as_u64() == Some(want)).then_some(())
        });
    }
}

/// The MQTT password a device logs in with: derived from its credential
/// (`drover_protocol::keys`); the credential itself is refused by the broker.
pub fn device_password(credential: &str) -> String {
    drover_protocol::keys::mqtt_password(credential.as_bytes())
}

/// The device credential in an agent config snippet from `device add`.
pub fn snippet_credential(snippet: &str) -> String {
    snippet
        .lines()
        .find_map(|l| l.strip_prefix("credential = "))
        .expect("credential")
        .trim_matches('"')
        .to_string()
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== hub log =====\n{}\n===== end of hub log =====",
                self.logs()
            );
        }
        self.stop();
    }
}

/// A real Mosquitto broker on a free port of 127.0.0.1, anonymous access allowed
/// (Drover's security rests on signatures and MACs, not on the broker).
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Mosquitto {
    /// On a free port, logging only errors (to nowhere).
    pub fn start() -> Mosquitto {
        Self::start_on(free_port(), None)
    }

    /// On 127.0.0.1:`port`; with `log`, every packet it receives and sends is written
    /// there (`log_type all`), e.g. to check the order of a client's packets.
    pub fn start_on(port: u16, log: Option<&std::path::Path>) -> Mosquitto {
        Self::spawn(port, log, "")
    }

    /// On 127.0.0.1:`port`, keeping its state in `dir`: persistent sessions (clean
    /// session off) and the messages queued for them, QoS 0 included, survive a
    /// [`Mosquitto::stop`] and a new start on the same `dir`.
    pub fn start_persistent(port: u16, dir: &std::path::Path) -> Mosquitto {
        let extra = format!(
            "persistence true\npersistence_location {}/\nqueue_qos0_messages true\n",
            dir.display()
        );
        Self::spawn(port, None, &extra)
    }

    /// SIGTERM and wait: an orderly stop (a persistent broker saves its state).
    pub fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    fn spawn(port: u16, log: Option<&std::path::Path>, extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let persistence = if extra.is_empty() {
            "persistence false\n"
        } else {
            extra
        };
        Self::run(
            port,
            log,
            dir,
            &format!("allow_anonymous true\n{persistence}"),
        )
    }

    /// On 127.0.0.1:`port` with logins and topic rules: no anonymous access, each
    /// `(user, password)` hashed into a `password_file` by `mosquitto_passwd -U`, `acl`
    /// as the `acl_file`.
    pub fn start_with_acl(port: u16, acl: &str, logins: &[(&str, &str)]) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let (acl_file, passwd) = (dir.path().join("acl"), dir.path().join("passwd"));
        fs::write(&acl_file, acl).expect("acl file");
        let plain: String = logins.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        fs::write(&passwd, plain).expect("password file");
        let st = Command::new("mosquitto_passwd")
            .arg("-U")
            .arg(&passwd)
            .status()
            .expect("mosquitto_passwd (apt-get install mosquitto)");
        assert!(st.success(), "mosquitto_passwd -U failed");
        // As root, Mosquitto drops to user `mosquitto` before reading these files, which
        // then cannot open a private temporary folder: stay root (tests only).
        let auth = format!(
            "user root\nallow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\n",
            passwd.display(),
            acl_file.display()
        );
        Self::run(port, None, dir, &auth)
    }

    /// On 127.0.0.1:`port`, anonymous, staying root (so that it can read root's 0600 key
    /// files), plus `settings` (e.g. a TLS `listener` block).
    pub fn start_with_settings(port: u16, settings: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = format!("user root\nallow_anonymous true\npersistence false\n{settings}");
        Self::run(port, None, dir, &all)
    }

    /// Writes the config (`settings`: logins and persistence) into `dir` and starts it.
    fn run(port: u16, log: Option<&std::path::Path>, dir: TempDir, settings: &str) -> Mosquitto {
        let conf = dir.path().join("mosquitto.conf");
        let logging = if log.is_some() {
            "log_dest stderr\nlog_type all\n"
        } else {
            ""
        };
        fs::write(
            &conf,
            // The default queue (1,000 messages per client) drops messages for a subscriber
            // that watches a whole fleet's topics.
            format!("listener {port} 127.0.0.1\n{settings}max_queued_messages 100000\n{logging}"),
        )
        .expect("conf");
        let stderr = match log {
            Some(path) => Stdio::from(fs::File::create(path).expect("mosquitto log")),
            None => Stdio::null(),
        };
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("mosquitto not found: apt-get install mosquitto");
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Mosquitto {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
