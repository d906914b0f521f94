//! End-to-end: the hub's web dashboard in a real headless Chromium, against a real hub and
//! real agents running real containers and sending real telemetry. The fleet page lists
//! the devices, a device page charts its usage, a killed container's restart shows up live
//! (through `/v1/events`, without a reload), and another machine reads only with a read
//! token and never writes. The loopback browser opens the address `drover-hub
//! dashboard-url` prints (the read token of `data_dir/read.token`); the remote one logs
//! in with `[api] token`, which is one more read token. A browser logged in by cookie reads a container's log (its
//! `<b>` stays text), follows it, and sees "last seen" follow telemetry; an unknown device
//! gets only an error. Screenshots go to `target/test-artifacts/dashboard-*.png`.
//! Needs root and Debian's `chromium`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use drover_tests::agent::TestAgent;
use drover_tests::browser::{Browser, artifacts_dir};
use drover_tests::hub::TestHub;
use drover_tests::{oci, require_root, wait_for};

const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "dashboard-test-token-0123456789";

/// What the sensor container prints when it starts: plain text, and markup that the
/// page must show as text.
const LOG_LINES: [&str; 2] = ["sensor says hello", "<b>not bold</b> & <img src=x>"];

/// A Deployment of a busybox container that prints [`LOG_LINES`], then burns a little CPU
/// and prints `tick N` every second, on `role=sensor` devices.
fn sensor(image: &Path) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: sensor}}\nspec:\n  selector: {{matchLabels: {{role: sensor}}}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n      containers:\n        - name: main\n          image: oci:{}:latest\n          command: [/bin/sh, -c, \"echo '{}'; echo '{}'; n=0; while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; n=$((n+1)); echo tick $n; sleep 1; done\"]\n          resources: {{memory: 32Mi}}\n",
        image.display(),
        LOG_LINES[0],
        LOG_LINES[1],
    )
}

/// A hub-connected agent named `name` with `labels`, sampling telemetry every second;
/// with `default_heartbeat`, its status comes every 30 s as out of the box (not every
/// [`drover_tests::agent::TEST_HEARTBEAT_S`]).
fn agent(hub: &TestHub, name: &str, labels: &[&str], default_heartbeat: bool) -> TestAgent {
    let mut a = TestAgent::new(name);
    a.connect_to_hub(&hub.device_add(name, labels));
    if default_heartbeat {
        let text = std::fs::read_to_string(&a.config).unwrap();
        let heartbeat = format!("heartbeat = \"{}s\"", drover_tests::agent::TEST_HEARTBEAT_S);
        assert!(text.contains(&heartbeat), "{text}");
        std::fs::write(&a.config, text.replace(&heartbeat, "heartbeat = \"30s\"")).unwrap();
    }
    a.append_config("[telemetry]\ninterval = \"1s\"\n");
    a.start();
    a
}

/// An address of this machine other than loopback: requests from it to the hub come from
/// a non-loopback peer.
fn non_loopback_ip() -> IpAddr {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .expect("ip (apt-get install iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("this machine has no global IPv4 address:\n{text}"))
}

/// A plain HTTP/1.1 request: (status, headers, first bytes of the body).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let body = if method == "POST" { "[]" } else { "" };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // The event stream never ends: read what is there within a moment.
    let mut buf = vec![0u8; 4096];
    let n = r.read(&mut buf).unwrap_or(0);
    (
        status,
        head,
        String::from_utf8_lossy(&buf[..n]).into_owned(),
    )
}

/// The hub's config rewritten to listen on every address with `TOKEN` (an extra read
/// token), and to count a
/// device offline after the default 90 s (one agent has the default 30 s heartbeat).
fn expose_with_token(hub: &TestHub) -> u16 {
    let port: u16 = hub.api.rsplit(':').next().unwrap().parse().unwrap();
    let text = std::fs::read_to_string(&hub.config).unwrap();
    let exposed = text
        .replace(
            "[api]\nlisten = \"127.0.0.1:",
            &format!("[api]\ntoken = \"{TOKEN}\"\nallow_plain = true\nlisten = \"0.0.0.0:"),
        )
        .replace("offline_after = \"10s\"", "offline_after = \"90s\"");
    assert_ne!(
        text, exposed,
        "the test hub's config changed shape:\n{text}"
    );
    std::fs::write(&hub.config, exposed).unwrap();
    port
}

fn shot(b: &mut Browser, name: &str) {
    let path = artifacts_dir().join(format!("dashboard-{name}.png"));
    b.screenshot(&path);
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn the_dashboard_shows_the_fleet_charts_a_device_and_updates_live() {
    if !require_root("the_dashboard_shows_the_fleet_charts_a_device_and_updates_live") {
        return;
    }
    let mut hub = TestHub::new();
    let port = expose_with_token(&hub);
    hub.start();
    let image = hub.dir.path().join("busybox");
    oci::busybox_layout(&image, "latest").expect("busybox layout");
    let a1 = agent(&hub, "dash-pi-1", &["role=sensor", "site=lab"], true);
    let _a2 = agent(&hub, "dash-pi-2", &["role=sensor", "site=roof"], false);
    let _a3 = agent(&hub, "dash-gw", &["role=gateway"], false);
    let (code, _, err) = hub.apply("sensor.yaml", &sensor(&image));
    assert_eq!(code, 0, "apply: {err}");
    wait_for("sensor running on dash-pi-1", T, || {
        a1.running_pid("sensor", "main")
    });

    let mut b = Browser::launch("dashboard-chromium", 1360, 900);
    // Logged in once with the address `dashboard-url` prints (the read token).
    let (code, url, err) = hub.cli(&["dashboard-url"]);
    assert_eq!(code, 0, "dashboard-url: {err}");
    let url = url.trim();
    assert_eq!(url, format!("{}/?token={}", hub.api, hub.read_token()));
    b.navigate(url);
    assert_eq!(
        b.eval("location.search"),
        "",
        "the token left in the address"
    );
    // The fleet page: every device, the two sensors healthy with their workload.
    b.wait_until(
        "three devices, two sensors healthy with 1/1 ready",
        T,
        "(() => { const rows = [...document.querySelectorAll('table.devices tr[data-device]')];
           const ok = (n) => rows.some(r => r.dataset.device === n
             && r.innerText.includes('healthy') && r.innerText.includes('1/1'));
           return rows.length === 3 && ok('dash-pi-1') && ok('dash-pi-2'); })()",
    );
    b.wait_until(
        "the sensor Deployment with 2/2 ready",
        T,
        "document.querySelector('tr[data-deployment=\"sensor\"]')?.innerText.includes('2/2')",
    );
    b.wait_until(
        "telemetry columns filled",
        T,
        "document.querySelector('tr[data-device=\"dash-pi-1\"]')?.innerText.includes('%')",
    );
    shot(&mut b, "fleet");

    // A device page: charts with real samples, the container's usage and restarts.
    b.navigate(&format!("{}/#/devices/dash-pi-1", hub.api));
    b.wait_until(
        "a CPU chart with samples and the container's series",
        T,
        "(() => { const c = document.querySelector('figure.chart svg.plot');
           const legend = document.querySelector('figure.chart .legend')?.innerText || '';
           return c && Number(c.dataset.points) > 0 && legend.includes('sensor/main'); })()",
    );
    b.wait_until(
        "the memory chart with samples",
        T,
        "Number(document.querySelectorAll('figure.chart svg.plot')[1]?.dataset.points) > 0",
    );
    let restarts = "document.querySelector('[data-workload=\"sensor\"] tr[data-container=\"main\"] .restarts')?.textContent";
    assert_eq!(b.wait_until("the restart count", T, restarts), "0");

    // Kill the container's process: the agent restarts it, the hub hears the status, the
    // page re-reads on the live event — the same document, no reload.
    b.eval("window.droverTestMarker = 'same page'");
    let pid = a1.running_pid("sensor", "main").unwrap();
    // SAFETY: killing the test's own container process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    b.wait_until(
        "the restart count to change on the page",
        T,
        &format!("{restarts} === '1'"),
    );
    assert_eq!(
        b.eval("window.droverTestMarker"),
        "same page",
        "the page reloaded"
    );
    let by = b.eval("document.body.dataset.refreshedBy");
    assert!(
        by.as_str().unwrap().split(' ').any(|w| w == "status"),
        "the refresh that showed the restart was not asked for by a status event: {by}"
    );
    b.wait_until(
        "the container running again",
        T,
        "document.querySelector('[data-workload=\"sensor\"] h3')?.innerText.includes('Running')",
    );
    shot(&mut b, "device");

    // The Deployment page: its revision, and which device runs which revision.
    b.navigate(&format!("{}/#/deployments/sensor", hub.api));
    b.wait_until(
        "both sensors listed with revision 1",
        T,
        "document.querySelectorAll('table.devices tr[data-device]').length === 2
         && document.querySelector('[data-fact=\"revision\"]')?.textContent === '1'",
    );
    shot(&mut b, "deployment");
    drop(b);

    // From another machine's address: 401 without a token, reads with a read token (the
    // hub's read.token or `[api] token`), never writes, not even with the admin token.
    let remote = SocketAddr::new(non_loopback_ip(), port);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let read = format!("Authorization: Bearer {}", hub.read_token());
    for path in [
        "/",
        "/v1/devices",
        "/v1/events",
        "/assets/app.js",
        "/metrics",
    ] {
        let (code, _, body) = http(remote, "GET", path, &[]);
        assert_eq!(code, 401, "GET {path} without a token: {body}");
        for with in [&bearer, &read] {
            assert_eq!(http(remote, "GET", path, &[with]).0, 200, "GET {path}");
        }
    }
    let (_, head, body) = http(remote, "GET", "/v1/events", &[&bearer]);
    assert!(
        head.contains("text/event-stream") && body.contains("event: hello"),
        "{head}{body}"
    );
    let wrong = "Authorization: Bearer dashboard-test-token-0123456788";
    assert_eq!(http(remote, "GET", "/v1/devices", &[wrong]).0, 401);
    // The CLI sends the token it is given ($DROVER_HUB_TOKEN), and says how when it has
    // none and cannot read the hub's (a config whose data folder holds no token).
    let elsewhere = hub.dir.path().join("elsewhere.toml");
    let empty = hub.dir.path().join("no-data");
    std::fs::write(
        &elsewhere,
        format!("data_dir = {:?}\n", empty.display().to_string()),
    )
    .unwrap();
    let cli = |token: Option<&str>| {
        let mut c = std::process::Command::new(drover_tests::bin("drover-hub"));
        c.args(["--api", &format!("http://{remote}"), "get", "devices"]);
        c.env_remove("DROVER_HUB_TOKEN");
        c.env("DROVER_HUB_CONFIG", &elsewhere);
        if let Some(t) = token {
            c.env("DROVER_HUB_TOKEN", t);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = cli(Some(TOKEN));
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = cli(None);
    assert!(
        code == Some(1)
            && err.contains("no-data/api.token")
            && err.contains("--token-file PATH or set DROVER_HUB_TOKEN"),
        "{err}"
    );
    let (code, err) = cli(Some("dashboard-test-token-0123456788"));
    assert!(
        code == Some(1) && err.contains("the token given is none of the hub's"),
        "{err}"
    );
    let admin = hub.admin_header();
    for with in [&bearer, &read, &admin] {
        let (code, _, body) = http(remote, "POST", "/v1/apply", &[with]);
        assert_eq!(code, 403, "a write from another machine, any token: {body}");
    }
    assert_eq!(
        http(remote, "GET", "/v2/", &[]).0,
        401,
        "the registry keeps its own rule"
    );

    // A browser on another machine logs in once with ?token= and then reads by cookie.
    let mut b = Browser::launch("dashboard-chromium-remote", 1200, 800);
    b.navigate(&format!("http://{remote}/?token={TOKEN}"));
    assert_eq!(
        b.eval("location.search"),
        "",
        "the token is not left in the address"
    );
    b.wait_until(
        "the fleet page through the cookie",
        T,
        "document.querySelectorAll('table.devices tr[data-device]').length === 3
         && document.body.dataset.live === '1'",
    );
    device_page_by_cookie(&mut b);
}

/// The device page in the browser logged in by cookie: "last seen" follows telemetry, a
/// container's log (through the same cookie) shows its lines as text, a follow streams
/// and stops, an error reads plainly, and an unknown device gets only an error.
fn device_page_by_cookie(b: &mut Browser) {
    b.eval("location.hash = '#/devices/dash-pi-1'");
    // dash-pi-1 reports status every 30 s but telemetry every second: in a refresh made
    // while its last status is over 6 s old, the page must still say it was seen just now.
    let seen = b.wait_until(
        "a refresh of the device page while the last status is > 6 s old",
        T,
        "(async () => {
           const status = async () => (await (await fetch('/v1/devices/dash-pi-1')).json()).device.last_seen_ms;
           const at = await status();
           if (Date.now() - at < 6000) return '';
           const n = Number(document.body.dataset.refreshes);
           for (let i = 0; i < 50 && Number(document.body.dataset.refreshes) === n; i++) {
             await new Promise((r) => setTimeout(r, 100));
           }
           if (Number(document.body.dataset.refreshes) === n || await status() !== at) return '';
           return document.querySelector('[data-fact=\"last seen\"]').textContent;
         })()",
    );
    let s: u64 = seen
        .as_str()
        .unwrap()
        .strip_suffix("s ago")
        .map_or(99, |n| n.parse().unwrap_or(99));
    assert!(
        s <= 3,
        "last seen {seen} although telemetry comes every second"
    );

    let logs = "document.querySelector('pre.log')";
    let status = "document.querySelector('.log-status').textContent";
    b.eval("document.querySelector('[data-workload=\"sensor\"] tr[data-container=\"main\"] button.logs').click()");
    let state = b.wait_until(
        "the sensor's log read to its end",
        T,
        &format!("['done', 'error'].includes({logs}.dataset.state) && {logs}.dataset.state"),
    );
    assert_eq!(state, "done", "{}", b.eval(status));
    let text = b.eval(&format!("{logs}.textContent"));
    let text = text.as_str().unwrap();
    for line in LOG_LINES {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line:?} not in the log:\n{text}"
        );
    }
    assert_eq!(
        b.eval(&format!("{logs}.querySelectorAll('*').length + [...document.querySelectorAll('main b, main img')]
             .filter((e) => e.textContent.includes('not bold') || e.getAttribute('src') === 'x').length")),
        0,
        "container output became markup"
    );
    shot(b, "logs");

    // Follow: new ticks arrive on the open stream; Stop ends it.
    b.eval("document.querySelector('.log-controls input[name=follow]').click()");
    b.eval("document.querySelector('.log-controls button.show').click()");
    b.wait_until(
        "the follow to start",
        T,
        &format!("{logs}.dataset.state === 'streaming'"),
    );
    let ticks = format!("({logs}.textContent.match(/^tick \\d+$/gm) || []).length");
    let before = b.eval(&ticks).as_u64().unwrap();
    b.wait_until(
        "a new tick on the followed log",
        Duration::from_secs(10),
        &format!("{ticks} > {before} && {logs}.dataset.state === 'streaming'"),
    );
    b.eval("document.querySelector('.log-controls button.stop').click()");
    assert_eq!(b.eval(&format!("{logs}.dataset.state")), "stopped");

    // The hub's refusal reads as it is.
    b.eval("document.querySelector('.log-controls input[name=follow]').click()");
    b.eval("document.querySelector('.log-controls input[name=since]').value = 'soon'");
    b.eval("document.querySelector('.log-controls button.show').click()");
    b.wait_until("the error", T, &format!("{logs}.dataset.state === 'error'"));
    let said = b.eval(status);
    assert!(said.as_str().unwrap().contains("since:"), "{said}");

    // A device the hub does not know: its error and a way back, no empty sections.
    b.eval("location.hash = '#/devices/nosuch'");
    b.wait_until(
        "the unknown device's error",
        T,
        "document.querySelector('[data-missing]')",
    );
    let page = b.eval("document.querySelector('main').innerText");
    assert!(page.as_str().unwrap().contains("nosuch"), "{page}");
    assert_eq!(
        b.eval("document.querySelectorAll('main h2, main [data-workload], main figure, main pre').length"),
        0,
        "{page}"
    );
    assert_eq!(
        b.eval("document.querySelector('main a.back').getAttribute('href')"),
        "#/"
    );
}
