#!/usr/bin/env python3
"""Hub fan-out benchmark (issue 8, "Hub at fleet scale"): N simulated devices — real MQTT
clients over loopback in one `drover-loadgen fleet` process — against a release
`drover-hub`, with its embedded broker (rumqttd) and with Mosquitto behind `broker.url`.
Called by bench/fanout.sh, which raises the descriptor limit first.

Per broker and N: registration through the hub's bulk path (`drover-hub device import
FILE -o json`, each run on a fresh data folder), then on the last hub: connect every
device; `apply` → every device acknowledged (and the hub recorded it), with an API prober
(GET /v1/devices/{one} and /v1/stats every 10 ms); at 10,000 devices also a one-device
change (`kind: Device` relabels one device so that a second Deployment lands on it) →
that device's acknowledgement; the steady state with every device heartbeating (hub CPU
over 60 s windows, RSS); and hub restarts (process start → API healthy and every device
received its republished desired state). Each figure is measured `--runs` times.
Results: bench/fanout-results.json; in a full run also the fan-out section of
bench/REPORT.md (bench/harness/report.py renders it, with the before column from
bench/fanout-results-before.json).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness"))
from fanout_procs import (HUB, LOADGEN, ROOT, Fleet, Hub, Mosquitto, cpu_s, free_port, record_failure, rss_kib,
                          teardown)

BROKERS = {"embedded": "rumqttd (embedded)", "mosquitto": "mosquitto"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def summary(xs, nd=3):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), nd), "min": round(min(xs), nd),
            "max": round(max(xs), nd), "runs": len(xs), "values": [round(x, nd) for x in xs]}


def deployment(path, name, selector, value):
    with open(path, "w") as f:
        f.write(f"apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n"
                f"  selector: {{matchLabels: {{{selector}}}}}\n  template:\n    spec:\n      containers:\n"
                "        - name: main\n          image: oci:/var/lib/images/sensor:1.0\n"
                f"          env: [{{name: ROUND, value: \"{value}\"}}]\n          resources: {{memory: 16Mi}}\n")


def device_manifest(path, name, labels):
    with open(path, "w") as f:
        f.write(f"apiVersion: drover.dev/v1\nkind: Device\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n")


def register(work, hub, n, creds):
    """Registers sim-0 .. sim-(n-1) (label fleet=bench) and writes the loadgen's creds file.
    Through `device import` (the bulk path); a hub without it gets one POST /v1/devices
    per device (`drover-loadgen register`). Returns the row's registration record."""
    csv = os.path.join(work, f"devices-{n}.csv")
    with open(csv, "w") as f:
        f.write("name,labels\n" + "".join(f"sim-{i},fleet=bench\n" for i in range(n)))
    t = time.monotonic()
    r = hub.cli("device", "import", csv, "-o", "json")
    secs = time.monotonic() - t
    if r.returncode == 0:
        doc = json.loads(r.stdout)
        if doc.get("registered") != n:
            raise RuntimeError(f"device import registered {doc.get('registered')} of {n}")
        with open(creds, "w") as f:
            json.dump({"public_key": doc["devices"][0]["public_key"],
                       "devices": [[d["name"], d["credential"]] for d in doc["devices"]]}, f)
        return {"path": "drover-hub device import (POST /v1/devices/import)", "seconds": secs}
    if "unrecognized subcommand" not in r.stderr:
        raise RuntimeError(f"device import failed: {r.stderr.strip()[-1000:]}")
    log("  this hub has no `device import`: falling back to one POST /v1/devices per device")
    t = time.monotonic()
    r = subprocess.run([LOADGEN, "register", "--api", hub.addr, "--count", str(n), "--out", creds], env=hub.env(),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"register failed: {r.stderr.strip()[-1000:]}")
    return {"path": "POST /v1/devices per device (fallback: no device import)", "seconds": time.monotonic() - t}


def registration(work, n, broker, bport, runs, out, procs):
    """`runs` registrations on fresh hubs (and a fresh Mosquitto: no retained state signed
    by an earlier hub's key); the last ones stay up, in `procs` (so that the caller stops
    them whatever happens). Returns the hub."""
    secs, hub = [], None
    for r in range(runs):
        if hub:
            hub.stop()
            shutil.rmtree(hub.data, ignore_errors=True)
        if procs.get("mosq"):
            procs.pop("mosq").stop()
        if broker == "mosquitto":
            procs["mosq"] = Mosquitto(work, bport)
            out["broker_version"] = procs["mosq"].version
        hub = procs["hub"] = Hub(work, f"{n}-{broker}-{r}", n, bport,
                                 f"127.0.0.1:{bport}" if broker == "mosquitto" else None)
        hub.start()
        hub.wait_healthy()
        rec = register(work, hub, n, os.path.join(work, f"creds-{n}.json"))
        secs.append(rec["seconds"])
        log(f"  registration {r + 1}/{runs}: {n} devices in {rec['seconds']:.2f} s ({rec['path']})")
    out["registration"] = {"path": rec["path"], "seconds": summary(secs)}
    return hub


def rollouts(work, fleet, hub, mosq, n, runs, timeout, out):
    res = []
    probe = {"paths": [f"/v1/devices/sim-{n // 2}", "/v1/stats"], "interval_ms": 10}
    man = os.path.join(work, f"fanout-{n}.yaml")
    for r in range(runs):
        deployment(man, "fanout", "fleet: bench", f"round-{r}-{time.time_ns()}")
        a = fleet.cmd("apply", manifest=man, hub_pid=hub.pid, broker_pid=mosq and mosq.pid,
                      timeout_s=timeout, probe=probe)
        res.append(a)
        p = a.get("probe") or {}
        log(f"  apply {r + 1}/{runs}: {'ok' if a['ok'] else 'FAILED: ' + str(a.get('failure'))}: all acked "
            f"(hub) {a.get('hub_s')} s, devices {a.get('devices_s')} s, apply cmd {a.get('apply_cmd_s')} s; "
            f"API p99 {p.get('p99_ms')} ms (n={p.get('count')}, max {p.get('max_ms')})")
        if not a["ok"]:
            raise RuntimeError(f"apply {r + 1}: {a.get('failure')}")
    probes = [a["probe"] for a in res]
    out["rollout"] = {"runs": res, "hub_s": summary([a["hub_s"] for a in res]),
                      "devices_s": summary([a["devices_s"] for a in res]),
                      "apply_cmd_s": summary([a["apply_cmd_s"] for a in res]),
                      "hub_cpu_s": summary([a["usage"]["hub_cpu_s"] for a in res]),
                      "hub_rss_peak_kib": max(a["usage"]["hub_rss_peak_kib"] for a in res)}
    out["api_probe"] = {"paths": probe["paths"], "interval_ms": probe["interval_ms"],
                        "p50_ms": summary([p["p50_ms"] for p in probes]),
                        "p99_ms": summary([p["p99_ms"] for p in probes]),
                        "max_ms": max((p["max_ms"] or 0) for p in probes),
                        "count": sum(p["count"] for p in probes), "errors": sum(p["errors"] for p in probes)}


def single_changes(work, fleet, hub, mosq, n, runs, out):
    """A Deployment on label pick=yes (nobody at first); each run relabels one device."""
    man = os.path.join(work, "pick.yaml")
    deployment(man, "pick", "pick: \"yes\"", "picked")
    r = hub.cli("apply", "-f", man)
    if r.returncode != 0:
        raise RuntimeError(f"apply of the pick Deployment failed: {r.stderr.strip()}")
    res = []
    for k in range(runs):
        name = f"sim-{(k + 1) * n // (runs + 1)}"
        dev = os.path.join(work, f"device-{name}.yaml")
        device_manifest(dev, name, "fleet: bench, pick: \"yes\"")
        a = fleet.cmd("apply", manifest=dev, hub_pid=hub.pid, broker_pid=mosq and mosq.pid, wait=name,
                      timeout_s=60)
        a["device"] = name
        res.append(a)
        log(f"  one-device change {k + 1}/{runs} ({name}): {'ok' if a['ok'] else 'FAILED: ' + str(a.get('failure'))}"
            f": ack {a.get('devices_s')} s, hub recorded {a.get('hub_s')} s, others changed {a.get('others_changed')}")
        if not a["ok"]:
            raise RuntimeError(f"one-device change {k + 1}: {a.get('failure')}")
        if a.get("others_changed"):
            raise RuntimeError(f"one-device change {k + 1}: {a['others_changed']} other devices changed too")
    out["single_device"] = {"runs": res, "device_s": summary([a["devices_s"] for a in res]),
                            "hub_s": summary([a["hub_s"] for a in res])}


def steady(fleet, hub, mosq, n, interval_ms, warmup_s, window_s, windows, out):
    """Every device sends its status every interval, spread evenly; CPU and RSS per window."""
    fleet.cmd("heartbeat", interval_ms=interval_ms)
    time.sleep(warmup_s)
    res = []
    try:
        for w in range(windows):
            acc0, c0, t0 = hub.get("/v1/stats").get("status_accepted", 0), cpu_s(hub.pid), time.monotonic()
            b0 = cpu_s(mosq.pid) if mosq else None
            rss_peak = b_peak = 0
            while time.monotonic() - t0 < window_s:
                time.sleep(1)
                rss_peak = max(rss_peak, rss_kib(hub.pid))
                if mosq:
                    b_peak = max(b_peak, rss_kib(mosq.pid))
            dt, c1 = time.monotonic() - t0, cpu_s(hub.pid)
            acc = hub.get("/v1/stats").get("status_accepted", 0) - acc0
            rec = {"window_s": round(dt, 2), "hub_cpu_s": round(c1 - c0, 2),
                   "hub_cpu_pct": round(100 * (c1 - c0) / dt, 2), "hub_rss_kib": rss_kib(hub.pid),
                   "hub_rss_peak_kib": rss_peak, "statuses_accepted": acc,
                   "statuses_per_s": round(acc / dt, 1)}
            if mosq:
                rec["broker"] = {"cpu_pct": round(100 * (cpu_s(mosq.pid) - b0) / dt, 2), "rss_peak_kib": b_peak}
            res.append(rec)
            log(f"  steady window {w + 1}/{windows}: hub CPU {rec['hub_cpu_pct']} % of a core over {rec['window_s']} s, "
                f"RSS {rss_peak / 1024:.1f} MiB, {rec['statuses_per_s']} statuses/s accepted")
    finally:
        fleet.cmd("heartbeat", interval_ms=0)
    expected = n * 1000 / interval_ms
    out["steady"] = {"devices": n, "heartbeat_s": interval_ms / 1000, "expected_statuses_per_s": round(expected, 1),
                     "windows": res, "hub_cpu_pct": summary([r["hub_cpu_pct"] for r in res], 2),
                     "hub_rss_mib": summary([r["hub_rss_peak_kib"] / 1024 for r in res], 1)}
    if mosq:
        out["steady"]["broker_cpu_pct"] = summary([r["broker"]["cpu_pct"] for r in res], 2)
        out["steady"]["broker_rss_mib"] = summary([r["broker"]["rss_peak_kib"] / 1024 for r in res], 1)
    low = [r["statuses_per_s"] for r in res if r["statuses_per_s"] < 0.8 * expected]
    if low:
        raise RuntimeError(f"steady state: the hub accepted {low} statuses/s, expected ~{expected:.0f}")
    time.sleep(2)  # statuses still in flight


def restarts(fleet, hub, n, runs, timeout, out):
    res = []
    for r in range(runs):
        fleet.cmd("mark")
        stop_s = hub.stop()
        t0 = hub.start()
        healthy = hub.wait_healthy()
        w = fleet.cmd("wait_resync", timeout_s=timeout)
        rec = {"stop_s": round(stop_s, 3), "healthy_s": round(healthy - t0, 3), "resync": w}
        if w["ok"]:
            rec["all_received_s"] = round(w["all_received_unix"] - t0, 3)
            rec["total_s"] = round(max(healthy, w["all_received_unix"]) - t0, 3)
        res.append(rec)
        log(f"  hub restart {r + 1}/{runs}: {'ok' if w['ok'] else 'FAILED: ' + str(w.get('failure'))}: healthy "
            f"{rec['healthy_s']} s, every device received its desired state {rec.get('all_received_s')} s "
            f"({w.get('reconnects')} reconnects)")
        if not w["ok"]:
            raise RuntimeError(f"hub restart {r + 1}: {w.get('failure')}")
    out["hub_start"] = {"runs": res, "total_s": summary([r["total_s"] for r in res]),
                        "healthy_s": summary([r["healthy_s"] for r in res])}


def row(work, n, broker, p):
    """Every figure for one broker and N; failures are recorded in the row, never hidden."""
    out = {"broker": BROKERS[broker], "broker_key": broker, "n": n}
    bport = free_port()
    procs, fleet = {}, None
    t = time.monotonic()
    try:
        hub = registration(work, n, broker, bport, p["register_runs"], out, procs)
        mosq = procs.get("mosq")
        fleet = Fleet(work, os.path.join(work, f"creds-{n}.json"), hub, f"127.0.0.1:{bport}",
                      ["--tcp-nodelay"] if p["tcp_nodelay"] else [])
        c = fleet.cmd("connect", timeout_s=p["connect_timeout"])
        out["connect"] = c
        log(f"  connect: {c.get('connect_all_s')} s all connected, {c.get('first_sync_hub_s')} s first statuses recorded")
        if not c["ok"]:
            raise RuntimeError(f"connect: {c.get('failure')}")
        out["hub_rss_connected_kib"] = rss_kib(hub.pid)
        rollouts(work, fleet, hub, mosq, n, p["runs"], p["rollout_timeout"], out)
        if p["single"]:
            single_changes(work, fleet, hub, mosq, n, p["runs"], out)
        if p["steady"]:
            steady(fleet, hub, mosq, n, *p["steady"], out)
        if p["restarts"]:
            restarts(fleet, hub, n, p["restarts"], p["connect_timeout"], out)
        out["fleet_counters"] = fleet.cmd("counters")
        out["ok"] = True
    except Exception as e:  # recorded in the row, never hidden
        record_failure(out, e, fleet)
        if fleet:
            for line in out["loadgen_log_tail"]:
                log(f"    loadgen: {line}")
        hub = procs.get("hub")
        if hub and hub.alive():
            try:
                stats = hub.get("/v1/stats")
                out["hub_stats"] = stats
                log(f"    hub stats: {json.dumps(stats, sort_keys=True)}")
            except OSError as err:
                log(f"    hub stats: unavailable ({err})")
    finally:
        hub, mosq = procs.get("hub"), procs.get("mosq")
        if hub and hub.proc and hub.proc.poll() is not None and out.get("ok"):
            out["ok"], out["failure"] = False, f"hub exited with {hub.proc.returncode}"
        teardown(out, fleet, hub, mosq)
    out["seconds"] = round(time.monotonic() - t, 1)
    return out


def git_commit():
    """The checkout's commit (with "+dirty" when it has uncommitted changes), or None."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def plan(args):
    """(n, broker, parameters) per row."""
    if args.smoke:
        return [(50, "embedded", dict(register_runs=1, runs=1, connect_timeout=30, rollout_timeout=30,
                                      single=True, steady=(1000, 1, 2, 1), restarts=1))]
    small = dict(register_runs=args.runs, runs=args.runs, connect_timeout=120, rollout_timeout=60,
                 single=False, steady=None, restarts=0)
    big = dict(register_runs=args.runs, runs=args.runs, connect_timeout=300, rollout_timeout=240, single=True,
               steady=(30000, 5, args.window, args.windows), restarts=args.runs)
    rows = [(1000, b, small) for b in BROKERS] + [(10000, b, big) for b in BROKERS]
    if args.only:
        n, b = args.only.split(":")
        rows = [r for r in rows if r[0] == int(n) and r[1] == b]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="N=50, embedded broker, one run of each (< 1 minute)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/fanout-results.json"))
    ap.add_argument("--report", help="splice the fan-out section into this REPORT.md "
                                     "(default: bench/REPORT.md in a full run writing bench/fanout-results.json)")
    ap.add_argument("--only", help="one row, N:embedded|mosquitto (for investigating)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each figure (default 3)")
    ap.add_argument("--window", type=int, default=60, help="steady-state window, seconds (default 60)")
    ap.add_argument("--windows", type=int, default=3, help="steady-state windows (default 3)")
    ap.add_argument("--nagle", action="store_true",
                    help="leave Nagle's algorithm on for the simulated devices (drover-agent sets TCP_NODELAY)")
    args = ap.parse_args()
    for b in (HUB, LOADGEN):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: cargo build --release --locked -p drover-hub -p drover-bench-loadgen")
    rows_plan = plan(args)
    for _, _, p in rows_plan:
        p["tcp_nodelay"] = not args.nagle
    if any(b == "mosquitto" for _, b, _ in rows_plan) and not shutil.which("mosquitto"):
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    work = tempfile.mkdtemp(prefix="drover-fanout-")
    rows, t_start = [], time.monotonic()
    try:
        for n, broker, p in rows_plan:
            log(f"fan-out: {n} devices, {BROKERS[broker]} ...")
            rows.append(row(work, n, broker, p))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {
        "what": "hub at fleet scale (issue 8): N simulated devices (real MQTT clients, one process) against a "
                "release drover-hub; registration through `device import`; apply -> every device acknowledged "
                "the new generation and the hub recorded it; a one-device change; API latency during applies; "
                "steady-state heartbeats; hub restart -> every device received its republished desired state",
        "smoke": args.smoke,
        "devices_tcp_nodelay": not args.nagle,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                    "shared": "other builds may have run at the same time"},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "hub_binary_bytes": os.path.getsize(HUB),
        "total_s": round(time.monotonic() - t_start, 1),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    report = args.report
    if report is None and not args.smoke and os.path.abspath(args.out) == os.path.join(ROOT, "bench/fanout-results.json"):
        report = os.path.join(ROOT, "bench/REPORT.md")
    import report as rep
    print("\n".join(rep.fanout_section(doc, rep.load_before())))
    if report:
        rep.splice_fanout(report, doc)
        log(f"fan-out section of {os.path.relpath(report, ROOT)} updated")
    log(f"written: {os.path.relpath(args.out, ROOT)} ({doc['total_s']} s)")
    sys.exit(0 if all(r.get("ok") for r in rows) else 1)


if __name__ == "__main__":
    main()
