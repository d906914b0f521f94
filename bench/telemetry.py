#!/usr/bin/env python3
"""Telemetry ingest benchmark (issue 12): N simulated devices (default 10,000) sending a
sealed telemetry sample every 10 s (N/10 samples a second) to a release `drover-hub` behind
Mosquitto (the embedded broker takes ~90 s just to connect 10,000 devices; bench/broker.md).
Called by bench/telemetry.sh (which raises the descriptor limit first).

The devices are `drover-loadgen fleet` (bench/loadgen): real MQTT clients, each sealing its
samples with its own credential, as drover-agent does (`telemetry {interval_ms}` command,
spread evenly over the interval). Sequence on one hub, in the same run: heartbeats only
(every 30 s, the agent's default) for `--windows` windows — the figure before; then
telemetry every 10 s on top, after a warm-up of one interval and one history flush, for the
same windows. Per window: hub CPU (utime+stime over the window, % of one core), the
telemetry thread's CPU, hub RSS (peak of 1 s samples), samples accepted per second and
dropped by reason (`get stats`), broker CPU. Then the read side at N devices: `/metrics`
scrape time and size (when the hub serves it), `GET /v1/telemetry` (all latest samples as
JSON) and `drover-hub top`, 10 times each. Results: bench/telemetry-results.json and the
"Telemetry (issue 12)" section of REPORT.md.
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))
from fanout_procs import ROOT, Fleet, Hub, Mosquitto, cpu_s, free_port, record_failure, rss_kib, teardown  # noqa: E402
from fanout import git_commit, register, summary  # noqa: E402
from rollout import thread_cpu  # noqa: E402
from common import splice_section  # noqa: E402
import agent_telemetry_report  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def stat(hub, key):
    return hub.get("/v1/stats").get(key, 0)


def windows(hub, mosq, n_windows, window_s, what):
    """Hub, telemetry-thread and broker usage over consecutive windows."""
    out = []
    for w in range(n_windows):
        s0, c0, t0 = hub.get("/v1/stats"), cpu_s(hub.pid), time.monotonic()
        tc0, b0 = thread_cpu(hub.pid, "telemetry"), cpu_s(mosq.pid)
        peak = 0
        while time.monotonic() - t0 < window_s:
            time.sleep(1)
            peak = max(peak, rss_kib(hub.pid))
        dt, s1 = time.monotonic() - t0, hub.get("/v1/stats")
        d = lambda k: s1.get(k, 0) - s0.get(k, 0)  # noqa: E731
        rec = {"window_s": round(dt, 2), "hub_cpu_pct": round(100 * (cpu_s(hub.pid) - c0) / dt, 2),
               "telemetry_thread_cpu_pct": round(100 * (thread_cpu(hub.pid, "telemetry") - tc0) / dt, 2),
               "hub_rss_peak_kib": peak, "broker_cpu_pct": round(100 * (cpu_s(mosq.pid) - b0) / dt, 2),
               "samples_per_s": round(d("telemetry_accepted") / dt, 1),
               "statuses_per_s": round(d("status_accepted") / dt, 1),
               "rejected": {k[len("telemetry_rejected_"):]: d(k) for k in s1 if k.startswith("telemetry_rejected_") and d(k)},
               "mirror_dropped": d("mirror_dropped")}
        out.append(rec)
        log(f"  {what} window {w + 1}/{n_windows}: hub CPU {rec['hub_cpu_pct']} % (telemetry thread "
            f"{rec['telemetry_thread_cpu_pct']} %), RSS {peak / 1024:.1f} MiB, {rec['samples_per_s']} samples/s, "
            f"broker CPU {rec['broker_cpu_pct']} %")
    return {"windows": out, "hub_cpu_pct": summary([r["hub_cpu_pct"] for r in out], 2),
            "telemetry_thread_cpu_pct": summary([r["telemetry_thread_cpu_pct"] for r in out], 2),
            "hub_rss_mib": summary([r["hub_rss_peak_kib"] / 1024 for r in out], 1),
            "broker_cpu_pct": summary([r["broker_cpu_pct"] for r in out], 2),
            "samples_per_s": summary([r["samples_per_s"] for r in out], 1)}


def timed_get(url, runs, headers=None):
    """Seconds per GET (median/min/max) and the body size as sent; None when the route is absent."""
    times, size = [], 0
    for _ in range(runs):
        t = time.monotonic()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
                size = len(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        times.append(time.monotonic() - t)
    return {"seconds": summary(times, 4), "bytes": size}


def timed_cli(hub, args, runs):
    times = []
    for _ in range(runs):
        t = time.monotonic()
        r = hub.cli(*args)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()[-300:]}")
        times.append(time.monotonic() - t)
    return {"seconds": summary(times, 4), "lines": len(r.stdout.splitlines())}


def bench(work, p):
    n, out = p["n"], {"n": p["n"], "interval_s": 10, "heartbeat_s": 30}
    bport = free_port()
    mosq = Mosquitto(work, bport, nodelay=True)
    out["broker"] = f"{mosq.version} (set_tcp_nodelay true)"
    hub = Hub(work, f"tel-{n}", n, bport, f"127.0.0.1:{bport}")
    fleet = None
    try:
        hub.start()
        hub.wait_healthy()
        creds = os.path.join(work, f"creds-{n}.json")
        out["registration"] = register(work, hub, n, creds)
        fleet = Fleet(work, creds, hub, f"127.0.0.1:{bport}", ["--tcp-nodelay", "--telemetry-workloads", str(p["workloads"])])
        c = fleet.cmd("connect", timeout_s=600)
        if not c["ok"]:
            raise RuntimeError(f"connect: {c.get('failure')}")
        log(f"  {n} devices connected in {c['connect_all_s']} s")
        fleet.cmd("heartbeat", interval_ms=30000)
        time.sleep(p["window_s"])
        out["before"] = windows(hub, mosq, p["windows"], p["window_s"], "heartbeats only")
        fleet.cmd("telemetry", interval_ms=10000)
        time.sleep(p["warmup_s"])
        out["telemetry"] = windows(hub, mosq, p["windows"], p["window_s"], "telemetry every 10 s")
        expected = n / 10
        low = [w["samples_per_s"] for w in out["telemetry"]["windows"] if w["samples_per_s"] < 0.9 * expected]
        if low:
            raise RuntimeError(f"the hub accepted {low} samples/s, expected ~{expected:.0f}")
        out["history_rows"] = stat(hub, "telemetry_history_rows")
        auth = {"Authorization": f"Bearer {hub.token}"}
        out["metrics_scrape"] = timed_get(f"http://{hub.addr}/metrics", p["reads"], auth)
        out["metrics_scrape_gzip"] = timed_get(f"http://{hub.addr}/metrics", p["reads"],
                                               dict(auth, **{"Accept-Encoding": "gzip"}))
        out["telemetry_all"] = timed_get(f"http://{hub.addr}/v1/telemetry", p["reads"], auth)
        out["top_devices"] = timed_cli(hub, ["top"], p["reads"])
        out["top_workloads"] = timed_cli(hub, ["top", "workloads"], p["reads"])
        ms = out["metrics_scrape"]
        log(f"  /metrics: {ms['seconds']['median'] if ms else 'not served'} s; /v1/telemetry "
            f"{out['telemetry_all']['seconds']['median']} s for {out['telemetry_all']['bytes']} B; "
            f"top {out['top_devices']['seconds']['median']} s")
        fleet.cmd("telemetry", interval_ms=0)
        out["fleet_counters"] = fleet.cmd("counters")
        out["ok"] = True
    except Exception as e:  # recorded, never hidden
        record_failure(out, e, fleet)
    finally:
        teardown(out, fleet, hub, mosq)
    return out


def section(doc):
    r = doc["result"]
    lines = ["## Telemetry (issue 12)", "",
             f"`bench/telemetry.sh` (commit {doc['commit']}, {doc['date']}): {r['n']:,} simulated devices "
             f"(`drover-loadgen fleet`, each sealing its samples with its own credential, {doc['params']['workloads']} "
             f"workload per sample) → Mosquitto → a release `drover-hub`; heartbeats every {r['heartbeat_s']} s "
             f"throughout, then a telemetry sample every {r['interval_s']} s from every device on top, in the same run. "
             "Windows of " f"{doc['params']['window_s']} s; median (min–max) over {doc['params']['windows']} windows.", ""]
    if not r.get("ok"):
        return lines + [f"**Failed**: {r.get('failure')}", ""]
    b, t = r["before"], r["telemetry"]
    f = lambda s, u="": f"{s['median']}{u} ({s['min']}–{s['max']})"  # noqa: E731
    lines += ["| figure | heartbeats only (before) | + telemetry every 10 s |", "|---|---|---|",
              f"| samples accepted / s | – | {f(t['samples_per_s'])} |",
              f"| hub CPU, % of one core | {f(b['hub_cpu_pct'])} | {f(t['hub_cpu_pct'])} |",
              f"| … of which the telemetry thread | {f(b['telemetry_thread_cpu_pct'])} | {f(t['telemetry_thread_cpu_pct'])} |",
              f"| hub RSS, MiB (peak) | {f(b['hub_rss_mib'])} | {f(t['hub_rss_mib'])} |",
              f"| Mosquitto CPU, % of one core | {f(b['broker_cpu_pct'])} | {f(t['broker_cpu_pct'])} |", ""]
    rej = {k: v for w in t["windows"] for k, v in w["rejected"].items()}
    lines += [f"Samples dropped by the hub during the telemetry windows: {rej or 'none'}; JSON mirror messages "
              f"dropped: {sum(w['mirror_dropped'] for w in t['windows'])}. History rows written (one per device-minute): "
              f"{r['history_rows']:,}.", ""]
    ms = r["metrics_scrape"]
    rows = [("`GET /metrics`", ms),
            ("`GET /metrics` with `Accept-Encoding: gzip` (as Prometheus asks)", r.get("metrics_scrape_gzip")),
            ("`GET /v1/telemetry` (every latest sample, JSON)", r["telemetry_all"])]
    lines += [f"Reads at {r['n']:,} devices ({doc['params']['reads']} each):", "", "| read | seconds | size |", "|---|---|---|"]
    for name, v in rows:
        lines.append(f"| {name} | " + (f"{f(v['seconds'])} | {v['bytes']:,} B |" if v else "not served by this hub | – |"))
    for name, key in (("`drover-hub top`", "top_devices"), ("`drover-hub top workloads`", "top_workloads")):
        v = r[key]
        lines.append(f"| {name} (whole CLI process) | {f(v['seconds'])} | {v['lines']:,} lines |")
    return lines + [""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="200 devices, 2 short windows (< 1 min)")
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--workloads", type=int, default=1, help="workloads per sample (default 1)")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/telemetry-results.json"))
    ap.add_argument("--report", help="REPORT.md to put the section into (default: bench/REPORT.md in a full run)")
    a = ap.parse_args()
    p = {"n": a.devices, "workloads": a.workloads, "windows": a.windows, "window_s": a.window_s,
         "warmup_s": 75, "reads": 10}
    if a.smoke:
        p.update(n=200, windows=2, window_s=8, warmup_s=12, reads=3)
        if a.out == os.path.join(ROOT, "bench/telemetry-results.json"):
            a.out = os.path.join(ROOT, "target/bench-smoke/telemetry-results.json")
    log(f"telemetry bench: {p['n']} devices")
    with tempfile.TemporaryDirectory(prefix="drover-telemetry-bench-") as work:
        result = bench(work, p)
    doc = {"commit": git_commit(), "date": time.strftime("%Y-%m-%d"), "params": p, "result": result}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    report = a.report or (None if a.smoke else os.path.join(ROOT, "bench/REPORT.md"))
    if report:
        splice_section(report, "## Telemetry (issue 12)", "\n".join(section(doc)))
        agent_telemetry_report.splice_saved(report)  # the agent-side part of the same section
    print("\n".join(section(doc)))
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
