#!/usr/bin/env python3
"""Embedded broker at its honest size (issue 8, item 7): the hub's embedded rumqttd
(`drover-embedded-broker`, the hub's own configuration, alone in its process) and
Mosquitto, each under the same N simulated devices (`drover-loadgen broker`: real MQTT
clients with the hub's traffic pattern, see bench/loadgen/src/broker.rs). Called by
bench/broker.sh, which raises the file descriptor limit first.

Each run starts a fresh broker, runs one `drover-loadgen broker` against it and stops it.
Writes bench/broker-results.json (every run) and prints medians [min-max] per row.
"""
import argparse, base64, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target/release")
BROKER, LOADGEN = os.path.join(REL, "drover-embedded-broker"), os.path.join(REL, "drover-loadgen")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before listening")
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


def cred():
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def write_creds(work, n):
    """Credentials file for both sides, and Mosquitto's password and ACL files."""
    path = os.path.join(work, f"creds-{n}.json")
    if os.path.exists(path):
        return path
    doc = {"hub_credential": cred(), "devices": [[f"sim-{i}", cred()] for i in range(n)]}
    with open(path, "w") as f:
        json.dump(doc, f)
    pw = os.path.join(work, f"passwd-{n}")
    with open(pw, "w") as f:
        f.write(f"drover-hub:{doc['hub_credential']}\n")
        f.writelines(f"{d}:{c}\n" for d, c in doc["devices"])
    subprocess.run(["mosquitto_passwd", "-U", pw], check=True)  # hashes the file in place
    return path


def mosquitto_conf(work, n, port):
    """The configuration README.md recommends for Drover (see "Switching to Mosquitto")."""
    acl = os.path.join(work, "acl")
    with open(acl, "w") as f:
        f.write("user drover-hub\ntopic readwrite drover/v1/#\n\n"
                "pattern read drover/v1/dev/%u/desired\npattern write drover/v1/dev/%u/status\n"
                "pattern write drover/v1/dev/%u/telemetry\npattern write drover/v1/dev/%u/online\n")
    path = os.path.join(work, f"mosquitto-{n}.conf")
    with open(path, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                f"password_file {os.path.join(work, f'passwd-{n}')}\nacl_file {acl}\n"
                "use_username_as_clientid true\nmax_connections -1\n"
                f"max_queued_messages {max(1000, 2 * n)}\nset_tcp_nodelay true\n"
                "persistence false\nlog_type error\nlog_type warning\n"
                "user root\n")  # bench only: read the temp files as root
    return path


def one_run(work, n, broker, extra, order, rounds, timeout, log):
    port = free_port()
    creds = write_creds(work, n)
    blog = os.path.join(work, f"{broker}-{n}.log")
    if broker == "mosquitto":
        cmd = ["mosquitto", "-c", mosquitto_conf(work, n, port)]
    else:
        cmd = [BROKER, "--listen", f"127.0.0.1:{port}", "--creds", creds,
               "--max-connections", str(2 * n + 100)] + extra
    out = {"broker": broker, "args": extra, "broker_bin": BROKER if broker != "mosquitto" else "mosquitto", "n": n, "order": order,
           "loadavg_before": open("/proc/loadavg").read().split()[:3]}
    proc = None
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(blog, "w"))
        wait_port(port, proc)
        lg = [LOADGEN, "broker", "--broker", f"127.0.0.1:{port}", "--creds", creds,
              "--broker-pid", str(proc.pid), "--order", order, "--rounds", str(rounds),
              "--timeout", str(timeout)]
        t = time.monotonic()
        r = subprocess.run(lg, capture_output=True, text=True, timeout=(rounds + 2) * timeout + 60)
        out["wall_s"] = round(time.monotonic() - t, 1)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip()[-1500:])
        out.update(json.loads(r.stdout))
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
    except Exception as e:  # recorded in the row, never hidden
        out["ok"], out["failure"] = False, str(e)
    finally:
        stop(proc)
    with open(blog, errors="replace") as f:
        lines = f.readlines()
    out["broker_log_lines"] = len(lines)
    if lines:
        out["broker_log_sample"] = [l.rstrip()[:300] for l in lines[-3:]]
    out["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    return out


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), 3), "min": min(xs), "max": max(xs), "runs": len(xs)}


def summarize(runs):
    """One row per (broker, args, n, order): medians of every headline figure."""
    groups = {}
    for r in runs:
        groups.setdefault((r["broker"], " ".join(r["args"]), r["n"], r["order"]), []).append(r)
    rows = []
    for (broker, args, n, order), rs in groups.items():
        ok = [r for r in rs if r.get("ok")]
        c = [r["connect"] for r in ok]
        # connect-first: the first round is the first fan-out (to topics new to the broker).
        skip = 1 if order == "connect-first" else 0
        first = [r["rounds"][0]["hub_s"] if skip else r["connect"]["status_all_s"] for r in ok]
        later = [x for r in ok for x in r["rounds"][skip:]]
        rows.append({
            "broker": broker + (f" {args}" if args else ""), "n": n, "order": order,
            "runs": len(rs), "ok": len(ok),
            "connect_all_s": stats([x["connect_all_s"] for x in c]),
            "subscribed_all_s": stats([x["subscribed_all_s"] for x in c]),
            "first_fanout_s": stats(first),
            "connect_broker_cpu_s": stats([x["cpu"]["broker_cpu_s"] for x in c]),
            "connect_others_cpu_s": stats([x["cpu"]["others_cpu_s"] for x in c]),
            "round_hub_s": stats([x["hub_s"] for x in later]),
            "round_broker_cpu_s": stats([x["cpu"]["broker_cpu_s"] for x in later]),
            "rss_connected_mib": stats([x["rss_kib"] / 1024 for x in c]),
            "rss_peak_mib": stats([max([r["connect"]["rss_peak_kib"]] + [x["rss_peak_kib"] for x in r["rounds"]]) / 1024 for r in ok]),
            "idle_broker_cpu_s": stats([r["idle"]["cpu"]["broker_cpu_s"] for r in ok]),
            "errors": sum(r.get("errors", 0) for r in ok),
            "failures": [r["failure"][:300] for r in rs if not r.get("ok")],
        })
    return rows


def fmt(s, unit="s", nd=2):
    if not s:
        return "-"
    return f"{s['median']:.{nd}f} [{s['min']:.{nd}f}-{s['max']:.{nd}f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1000,2000,5000,10000", help="device counts, comma-separated")
    ap.add_argument("--brokers", default="rumqttd,mosquitto")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--order", default="publish-first", choices=["publish-first", "connect-first"])
    ap.add_argument("--rumqttd-args", default="", help="extra drover-embedded-broker flags (settings to try)")
    ap.add_argument("--broker-bin", help="another drover-embedded-broker build (e.g. other compiler settings)")
    ap.add_argument("--timeout", type=int, default=400, help="seconds per phase")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/broker-results.json"))
    args = ap.parse_args()
    global BROKER
    BROKER = args.broker_bin or BROKER
    for b in (BROKER, LOADGEN):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: cargo build --release --locked -p drover-bench-embedded-broker -p drover-bench-loadgen")
    brokers = args.brokers.split(",")
    if "mosquitto" in brokers and not shutil.which("mosquitto"):
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    extra = args.rumqttd_args.split()
    work = tempfile.mkdtemp(prefix="drover-broker-")
    runs, t0 = [], time.monotonic()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    try:
        for n in [int(x) for x in args.n.split(",")]:
            for broker in brokers:
                for k in range(args.runs):
                    log(f"broker: {broker} {' '.join(extra) if broker != 'mosquitto' else ''} N={n} run {k + 1}/{args.runs} ...")
                    r = one_run(work, n, broker, extra if broker != "mosquitto" else [], args.order,
                                args.rounds, args.timeout, log)
                    runs.append(r)
                    c = r.get("connect", {})
                    log(f"  -> {'ok' if r.get('ok') else 'FAILED: ' + str(r.get('failure'))[:300]}"
                        f" connect {c.get('connect_all_s')} s, first fan-out {c.get('status_all_s')} s,"
                        f" rounds {[x['hub_s'] for x in r.get('rounds', [])]} s, RSS {c.get('rss_kib', 0) // 1024} MiB,"
                        f" others' CPU {c.get('cpu', {}).get('others_cpu_s')} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = summarize(runs)
    doc = {
        "what": "MQTT broker alone under N simulated devices (hub traffic pattern): time until every "
                "device is connected, subscribed and (publish-first) has answered the retained desired "
                "message published before it connected; later fan-out rounds (hub publishes N retained "
                "QoS 1 messages, time until the hub has all N QoS 1 replies); broker RSS and CPU time. "
                "others_cpu_s = CPU used meanwhile by every other process on the machine (contention).",
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "mosquitto": subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
        if shutil.which("mosquitto") else None,
        "total_s": round(time.monotonic() - t0, 1),
        "rows": rows,
        "runs": runs,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{'broker':<34} {'N':>6} {'connect all':>20} {'first fan-out':>20} {'later rounds':>20} "
          f"{'RSS MiB':>16} {'CPU connect':>18} {'others CPU':>8}")
    for r in rows:
        print(f"{r['broker'][:34]:<34} {r['n']:>6} {fmt(r['connect_all_s']):>20} {fmt(r['first_fanout_s']):>20} "
              f"{fmt(r['round_hub_s']):>20} {fmt(r['rss_connected_mib'], nd=0):>16} "
              f"{fmt(r['connect_broker_cpu_s']):>18} {fmt(r['connect_others_cpu_s'], nd=1):>8}"
              + (f"  {r['runs'] - r['ok']} FAILED: {r['failures'][:1]}" if r["ok"] < r["runs"] else ""))
    print(f"written: {os.path.relpath(args.out, ROOT)} ({doc['total_s']} s)")
    sys.exit(0 if all(r["ok"] == r["runs"] for r in rows) else 1)


if __name__ == "__main__":
    main()
