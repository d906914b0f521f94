#!/usr/bin/env python3
"""Hub fan-out benchmark (issue 5, item 3): N simulated devices (real MQTT clients over
loopback, `drover-loadgen`) against a release `drover-hub`, with its embedded broker and
with Mosquitto behind `broker.url`. Called by bench/fanout.sh, which raises the file
descriptor limit first.

For each N, one hub data folder: the devices are registered once (POST /v1/devices), and
the Mosquitto row restarts the hub on the same store with `broker.url` set. Each row
applies a Deployment selecting every device (label fleet=bench) and times it until every
device has acknowledged the new generation.
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target/release")
HUB, LOADGEN = os.path.join(REL, "drover-hub"), os.path.join(REL, "drover-loadgen")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def manifest(path, value):
    with open(path, "w") as f:
        f.write("apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: fanout}\nspec:\n"
                "  selector: {matchLabels: {fleet: bench}}\n  template:\n    spec:\n      containers:\n"
                "        - name: main\n          image: oci:/var/lib/images/sensor:1.0\n"
                f"          env: [{{name: ROUND, value: \"{value}\"}}]\n          resources: {{memory: 16Mi}}\n")


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return f.readlines()[-n:]
    except OSError:
        return []


def row(work, n, broker, creds, timeout, log):
    """One measurement: start mosquitto (if asked) and the hub, register (first time), run."""
    api, bport = free_port(), free_port()
    data = os.path.join(work, f"hub-{n}")
    cfg = os.path.join(work, f"hub-{n}-{broker}.toml")
    hub_log = os.path.join(work, f"hub-{n}-{broker}.log")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{data}"\nlog_level = "warn"\n[api]\nlisten = "127.0.0.1:{api}"\n'
                f'advertise = "127.0.0.1:{api}"\n[broker]\nlisten = "127.0.0.1:{bport}"\n'
                f'advertise = "127.0.0.1:{bport}"\nmax_connections = {2 * n + 100}\n')
        if broker == "mosquitto":
            f.write(f'url = "127.0.0.1:{bport}"\n')
    mosq = hub = None
    out = {"broker": "rumqttd (embedded)" if broker == "embedded" else "mosquitto", "n": n}
    try:
        if broker == "mosquitto":
            mcfg = os.path.join(work, "mosquitto.conf")
            with open(mcfg, "w") as f:
                f.write(f"listener {bport} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                        "max_queued_messages 20000\npersistence false\nlog_type error\nlog_type warning\n")
            mosq = subprocess.Popen(["mosquitto", "-c", mcfg], stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(work, "mosquitto.log"), "w"))
            wait_port(bport)
            out["broker_version"] = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
        hub = subprocess.Popen([HUB, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=open(hub_log, "w"))
        wait_http(f"http://127.0.0.1:{api}/v1/healthz")
        if not os.path.exists(creds):
            bulk = n > API_REGISTER_MAX
            r = subprocess.run([LOADGEN, "register", "--api", f"127.0.0.1:{api}", "--count", str(1 if bulk else n),
                                "--out", creds], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"register failed: {r.stderr.strip()}")
            out["register"] = json.loads(r.stdout)
            log(f"  registered {out['register']['registered']} devices via POST /v1/devices in {out['register']['register_s']} s")
            if bulk:
                # POST /v1/devices reconciles the whole fleet per device (quadratic: ~6 s for
                # 1,000, ~10 min for 10,000): write the rest straight into the stopped hub's store.
                stop(hub)
                t = time.monotonic()
                bulk_register(data, creds, n)
                out["register"]["bulk_sqlite_s"] = round(time.monotonic() - t, 3)
                out["register"]["bulk_rows"] = n - 1
                log(f"  added {n - 1} more devices straight into the store in {out['register']['bulk_sqlite_s']} s")
                hub = subprocess.Popen([HUB, "serve", "--config", cfg], stdout=subprocess.DEVNULL,
                                       stderr=open(hub_log, "a"))
                t = time.monotonic()
                wait_http(f"http://127.0.0.1:{api}/v1/healthz", 120)
                out["hub_start_s"] = round(time.monotonic() - t, 3)
        man = os.path.join(work, f"dep-{n}-{broker}.yaml")
        manifest(man, f"{broker}-{time.time_ns()}")
        cmd = [LOADGEN, "run", "--api", f"127.0.0.1:{api}", "--broker", f"127.0.0.1:{bport}",
               "--creds", creds, "--hub-pid", str(hub.pid), "--hub-bin", HUB, "--manifest", man,
               "--timeout", str(timeout)]
        if mosq:
            cmd += ["--broker-pid", str(mosq.pid)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * timeout + 60)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"drover-loadgen run did not finish within {3 * timeout + 60} s")
        if r.returncode != 0:
            raise RuntimeError(f"drover-loadgen run failed: {r.stderr.strip()[-2000:]}")
        res = json.loads(r.stdout)
        out["broker_process"] = res.pop("broker", None)  # Mosquitto's own RSS and CPU
        out.update(res)
        if hub.poll() is not None:
            out["ok"] = False
            out["failure"] = f"hub exited with {hub.returncode}"
    except Exception as e:  # recorded in the row, never hidden
        out["ok"] = False
        out["failure"] = str(e)
    finally:
        if hub is not None and hub.poll() is not None and out.get("ok"):
            out["ok"], out["failure"] = False, f"hub exited with {hub.returncode}"
        stop(hub)
        stop(mosq)
    errs = [l.rstrip() for l in tail(hub_log, 400) if " ERROR " in l or " WARN " in l]
    out["hub_log_warnings"] = len(errs)
    if errs:
        out["hub_log_sample"] = errs[-3:]
    if not out.get("ok"):
        out["hub_log_tail"] = [l.rstrip() for l in tail(hub_log)]
    return out


API_REGISTER_MAX = 2000


def bulk_register(data, creds, n):
    """Adds devices sim-1 .. sim-(n-1) to a stopped hub's SQLite store (the schema of
    hub/src/store.rs: name, labels JSON, credential = 32 random bytes base64url), and their
    credentials to `creds`. The hub's start-up resync gives each its first desired state."""
    import base64, sqlite3
    with open(creds) as f:
        doc = json.load(f)
    now = int(time.time() * 1000)
    rows = []
    for i in range(1, n):
        cred = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        rows.append((f"sim-{i}", '{"fleet":"bench"}', cred, now))
    db = sqlite3.connect(os.path.join(data, "fleet.db"))
    with db:
        db.executemany("INSERT INTO devices (name, labels, credential, created_ms) VALUES (?, ?, ?, ?)", rows)
    db.close()
    doc["devices"] += [[r[0], r[2]] for r in rows]
    with open(creds, "w") as f:
        json.dump(doc, f)


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.0f}"


def fmt(x, unit="s"):
    return "-" if x is None else f"{x:.2f} {unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="N=50, embedded broker only (< 1 minute)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/fanout-results.json"))
    ap.add_argument("--only", help="one row, N:embedded|mosquitto (for investigating)")
    args = ap.parse_args()
    for b in (HUB, LOADGEN):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: cargo build --release --locked -p drover-hub -p drover-bench-loadgen")
    plan = [(50, "embedded", 30)] if args.smoke else \
        [(1000, "embedded", 60), (1000, "mosquitto", 60), (10000, "embedded", 150), (10000, "mosquitto", 90)]
    if args.only:
        n, b = args.only.split(":")
        plan = [(int(n), b, 150 if int(n) > 2000 else 60)]
    if any(b == "mosquitto" for _, b, _ in plan) and not shutil.which("mosquitto"):
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    work = tempfile.mkdtemp(prefix="drover-fanout-")
    rows, t_start = [], time.monotonic()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    try:
        for n, broker, timeout in plan:
            log(f"fan-out: {n} devices, {broker} broker ...")
            r = row(work, n, broker, os.path.join(work, f"creds-{n}.json"), timeout, log)
            rows.append(r)
            log(f"  -> {'ok' if r.get('ok') else 'FAILED: ' + str(r.get('failure'))}"
                f" (connect {fmt(r.get('connect_all_s'))}, rollout {fmt(r.get('rollout_hub_s'))})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {
        "what": "hub fan-out: time from `drover-hub apply` of a Deployment selecting all N simulated "
                "devices to every device acknowledging the new generation (devices: PUBACK of their "
                "status; hub: status_accepted counter), hub RSS and CPU (utime+stime)",
        "smoke": args.smoke,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "hub_binary_bytes": os.path.getsize(HUB),
        "total_s": round(time.monotonic() - t_start, 1),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"{'broker':<20} {'N':>6} {'connect':>9} {'rollout':>9} {'(devices)':>9} {'RSS idle':>9} "
          f"{'RSS peak':>9} {'CPU roll':>9}  errors")
    for r in rows:
        print(f"{r['broker']:<20} {r['n']:>6} {fmt(r.get('connect_all_s')):>9} {fmt(r.get('rollout_hub_s')):>9} "
              f"{fmt(r.get('rollout_devices_s')):>9} {mib(r.get('hub_rss_idle_kib')):>5} MiB "
              f"{mib(r.get('hub_rss_peak_kib')):>5} MiB {fmt(r.get('hub_cpu_rollout_s')):>9}  "
              f"{sum((r.get('errors') or {}).values())}"
              + ("" if r.get("ok") else f"  FAILED: {r.get('failure')}"))
    print(f"written: {os.path.relpath(args.out, ROOT)} ({doc['total_s']} s)")
    sys.exit(0 if all(r.get("ok") for r in rows) else 1)


if __name__ == "__main__":
    main()
