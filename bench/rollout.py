#!/usr/bin/env python3
"""Health-gated rollout benchmark (issue 11): a Deployment with `strategy: RollingUpdate`
rolled out over N simulated devices (default 1,000) against a release `drover-hub` with its
embedded broker. Called by bench/rollout.sh (which raises the descriptor limit first).

The devices are `drover-loadgen fleet --health` (bench/loadgen, the fan-out bench's
simulator): real MQTT clients that verify every signed desired state and report each
workload with the revision they received, running with a passing readiness probe after
`--ready-after-ms` — or never ready when an image contains `sensor:bad` — so the hub's own
rollout code judges them as it judges agents. Registration, hub and fleet processes come
from bench/fanout.py and bench/harness/fanout_procs.py.

Sequence: fresh hub, `device import` of N devices, connect, heartbeats every 30 s (the
agent's default), revision 1 applied to all at once (first revision: nothing to roll from)
→ every device acknowledged; hub CPU over an idle window (heartbeats only). Then `--runs`
good rollouts (a new env value each: revision 2, 3, 4), one with `minReadySeconds: 1`
(full run only: how the 1 s step timer and the status batches meet a real wait), and one
failing rollout (image `sensor:bad`, followed with `apply --wait`, which must exit 4). Each is timed from the `apply` to the hub's RolloutComplete / RolledBack
event; batch times come from the hub's RolloutBatch events and the devices' receipts;
hub CPU (utime+stime) and peak RSS from /proc over the same window; each committed plan's
plan/sign/commit milliseconds from the hub's log. Events are read from the hub's SQLite
store read-only (the API returns only the last 20), so watching costs the hub nothing.
Last, the controller's per-step work on N devices alone: `rollout_step` (hub/examples).
Results: bench/rollout-results.json and the "Rollouts (issue 11)" section of REPORT.md.
"""
import argparse, json, os, re, sqlite3, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))
from fanout_procs import (HUB, LOADGEN, REL, ROOT, USER_HZ, Fleet, Hub, Mosquitto, cpu_s, free_port,  # noqa: E402
                          record_failure, rss_kib, teardown)
from fanout import git_commit, register, summary  # noqa: E402
import rollout_report  # noqa: E402

STEP_BIN = os.path.join(REL, "examples/rollout_step")
BIG = os.path.join(ROOT, "bench/rollout-results-10k.json")
NAME = "rollbench"
GOOD, BAD = "oci:/var/lib/images/sensor:1.0", "sensor:bad"
STRATEGY = "canary: 10%, batchSize: 10%, failureThreshold: 1"
BATCH_RE = re.compile(r"revision (\d+) to (?:first batch|batch (\d+)): (.*)")
PLAN_RE = re.compile(r"fleet plan committed.*?devices=(\d+).*?plan_ms=(\d+) sign_ms=(\d+) commit_ms=(\d+)")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def manifest(path, value, image, health_timeout_s, min_ready_s=0):
    with open(path, "w") as f:
        f.write(f"apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {NAME}}}\nspec:\n"
                f"  selector: {{matchLabels: {{fleet: bench}}}}\n  minReadySeconds: {min_ready_s}\n"
                f"  strategy: {{type: RollingUpdate, {STRATEGY}, healthTimeout: {health_timeout_s}s}}\n"
                "  template:\n    spec:\n      containers:\n        - name: main\n"
                f"          image: {image}\n          env: [{{name: ROUND, value: \"{value}\"}}]\n"
                "          resources: {memory: 16Mi}\n")


def thread_cpu(pid, name="controller"):
    """utime + stime of the process's threads called `name`, in seconds."""
    total = 0.0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
        except OSError:
            continue
        if s[s.index("(") + 1:s.rindex(")")] == name:
            rest = s.rsplit(")", 1)[1].split()
            total += (int(rest[11]) + int(rest[12])) / USER_HZ
    return total


def controller_usage(hub, t0, c0, b0):
    """The controller thread over a window started at (monotonic t0, its CPU c0, message
    batches b0): % of a core and status batches folded per second."""
    dt = time.monotonic() - t0
    batches = hub.get("/v1/stats").get("controller_message_batches", 0) - b0
    return {"controller_cpu_s": round(thread_cpu(hub.pid) - c0, 3),
            "controller_cpu_pct": round(100 * (thread_cpu(hub.pid) - c0) / dt, 2),
            "message_batches_per_s": round(batches / dt, 1)}


def events_since(hub, after_ms):
    """The Deployment's events from the hub's store (read-only): (ts_ms, reason, message)."""
    con = sqlite3.connect(f"file:{os.path.join(hub.data, 'fleet.db')}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT ts_ms, reason, message FROM events WHERE kind = 'deployment' AND name = ? "
                           "AND ts_ms >= ? ORDER BY id", (NAME, after_ms)).fetchall()
    finally:
        con.close()


def follow(hub, t0_ms, timeout, proc):
    """Polls the events every 50 ms until the rollout ended (and `proc`, an `apply --wait`,
    exited); samples the hub's RSS meanwhile. Returns (events, peak RSS KiB, Unix end)."""
    peak, deadline = rss_kib(hub.pid), time.monotonic() + timeout
    while True:
        peak = max(peak, rss_kib(hub.pid))
        evs = events_since(hub, t0_ms)
        if any(r in ("RolloutComplete", "RolledBack") for _, r, _ in evs) and (proc is None or proc.poll() is not None):
            return evs, peak, time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no RolloutComplete/RolledBack within {timeout} s; last events: {evs[-3:]}")
        time.sleep(0.05)


def batches_of(evs, end_ms, receipts):
    """Per batch: when the hub started it, its devices, how long it lasted (to the next
    batch or the end), and when its last device received the revision."""
    starts = [(ts, m) for ts, r, msg in evs if r == "RolloutBatch" and (m := BATCH_RE.match(msg))]
    out = []
    for k, (ts, m) in enumerate(starts):
        devices = m.group(3).split(", ")
        nxt = starts[k + 1][0] if k + 1 < len(starts) else end_ms
        got = [receipts[d] for d in devices if d in receipts]
        out.append({"batch": int(m.group(2) or 0), "devices": len(devices), "duration_s": round((nxt - ts) / 1000, 3),
                    "last_received_s": round(max(got) - ts / 1000, 3) if got else None,
                    "received": len(got)})
    return out


def commits_in(hub, offset):
    """The hub's "fleet plan committed" lines after byte `offset` of its log."""
    with open(hub.log, errors="replace") as f:
        f.seek(offset)
        rows = [m.groups() for m in map(PLAN_RE.search, f) if m]
    return [dict(zip(("devices", "plan_ms", "sign_ms", "commit_ms"), map(int, r))) for r in rows]


def rollout(hub, fleet, work, k, image, p, wait_cli=False, min_ready_s=0):
    """One apply of a new revision, followed to its end."""
    man, timeout = os.path.join(work, f"rollbench-{k}.yaml"), p["timeout"]
    manifest(man, f"round-{k}-{time.time_ns()}", image, p["health_timeout_s"], min_ready_s)
    stats0, log_off = hub.get("/v1/stats"), os.path.getsize(hub.log)
    acc0, b0 = stats0.get("status_accepted", 0), stats0.get("controller_message_batches", 0)
    rss0, cpu0, ctrl0, m0, t0 = rss_kib(hub.pid), cpu_s(hub.pid), thread_cpu(hub.pid), time.monotonic(), time.time()
    args = [HUB, "apply", "-f", man, "--api", f"http://{hub.addr}"]
    if wait_cli:
        args += ["--wait", "--timeout", f"{timeout}s"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=hub.env())
    t0_ms = int(t0 * 1000)
    evs, peak, t_end = follow(hub, t0_ms, timeout, proc if wait_cli else None)
    cpu, ctrl = cpu_s(hub.pid) - cpu0, controller_usage(hub, m0, ctrl0, b0)
    out, err = proc.communicate(timeout=60)
    end_ts, end_reason, end_msg = next((ts, r, m) for ts, r, m in evs if r in ("RolloutComplete", "RolledBack"))
    first = next((m for _, r, msg in evs if r == "RolloutBatch" and (m := BATCH_RE.match(msg))), None)
    if first is None:
        raise RuntimeError(f"apply {k}: no RolloutBatch event; apply said {out.strip()} {err.strip()}")
    to = int(first.group(1))
    rec = fleet.cmd("revisions", revision=to)
    status = json.loads(hub.cli("rollout", "status", NAME, "-o", "json").stdout)
    ro = status.get("rollout") or {}
    res = {
        "revision": to, "from": ro.get("from"), "phase": ro.get("phase"), "reason": ro.get("reason"),
        "total_s": round((end_ts - t0_ms) / 1000, 3), "end_ms": end_ts, "end_event": end_reason, "end_message": end_msg[:300],
        "first_batch_s": round((evs[[r for _, r, _ in evs].index("RolloutBatch")][0] - t0_ms) / 1000, 3),
        "seen_s": round(t_end - t0, 3), "hub_cpu_s": round(cpu, 3), "hub_rss_before_kib": rss0,
        "hub_rss_peak_kib": peak, **ctrl,
        "counts": {key: ro.get(key) for key in ("total", "updated", "healthy", "failed", "pending")},
        "devices_received_revision": rec["devices"],
        "batches": batches_of(evs, end_ts, rec["received"]),
        "device_healthy_events": sum(r == "DeviceHealthy" for _, r, _ in evs),
        "device_failed_events": sum(r == "DeviceFailed" for _, r, _ in evs),
        "statuses_accepted": hub.get("/v1/stats").get("status_accepted", 0) - acc0,
        "commits": commits_in(hub, log_off),
        "apply_exit": proc.returncode, "apply_stdout_tail": out.strip().splitlines()[-4:],
    }
    if wait_cli:
        res["wait_cli"] = True
    if min_ready_s:
        res["min_ready_s"] = min_ready_s
    return res


def idle(hub, seconds):
    """Hub CPU with only the heartbeats, no rollout, for comparison."""
    c0, t0 = cpu_s(hub.pid), time.monotonic()
    ctrl0, b0 = thread_cpu(hub.pid), hub.get("/v1/stats").get("controller_message_batches", 0)
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return {"window_s": round(dt, 2), "hub_cpu_s": round(cpu_s(hub.pid) - c0, 3),
            "hub_cpu_pct": round(100 * (cpu_s(hub.pid) - c0) / dt, 2), "hub_rss_kib": rss_kib(hub.pid),
            **controller_usage(hub, t0, ctrl0, b0)}


def waiting_step_ms(run, idle):
    """Controller time per step while a rollout waits (minReadySeconds, a health timeout):
    its thread's CPU above the idle window's, over the steps (one per status batch, one a
    second). An estimate from 10 ms CPU ticks over windows of 10 s and more."""
    extra = (run["controller_cpu_pct"] - idle["controller_cpu_pct"]) / 100
    return round(1000 * extra / (run["message_batches_per_s"] + 1), 2)


def settle(hub, revision, since_ms, timeout=60):
    """Seconds from `since_ms` until `rollout status` shows every device reporting
    `revision` (polled every 0.5 s: an upper bound)."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        devs = json.loads(hub.cli("rollout", "status", NAME, "-o", "json").stdout)["devices"]
        if all(d["reported"] == revision for d in devs):
            return round(time.time() - since_ms / 1000, 3)
        time.sleep(0.5)
    return None


def step_bench(n, iterations):
    if not os.access(STEP_BIN, os.X_OK):
        return {"failure": f"missing {STEP_BIN} (cargo build --release --locked -p drover-hub --example rollout_step)"}
    r = subprocess.run([STEP_BIN, str(n), str(iterations)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return {"failure": r.stderr.strip()[-500:]}
    return json.loads(r.stdout)


def bench(work, p):
    """Everything on one hub; failures are recorded, never hidden."""
    n = p["n"]
    out = {"n": n}
    bport = free_port()
    mosq = Mosquitto(work, bport, nodelay=True) if p["mosquitto_nodelay"] else None
    hub = Hub(work, f"roll-{n}-{'mosquitto' if mosq else 'embedded'}", n, bport, f"127.0.0.1:{bport}" if mosq else None,
              log_level="warn,drover_hub::controller::core=info")
    out["broker"] = "mosquitto (set_tcp_nodelay true)" if mosq else "rumqttd (embedded)"
    fleet = None
    try:
        hub.start()
        hub.wait_healthy()
        creds = os.path.join(work, f"creds-{n}.json")
        out["registration"] = register(work, hub, n, creds)
        fleet = Fleet(work, creds, hub, f"127.0.0.1:{bport}",
                      ["--tcp-nodelay", "--health", "--ready-after-ms", str(p["ready_after_ms"]),
                       "--unhealthy-image", BAD])
        c = fleet.cmd("connect", timeout_s=300)
        if not c["ok"]:
            raise RuntimeError(f"connect: {c.get('failure')}")
        log(f"  {n} devices connected in {c['connect_all_s']} s")
        fleet.cmd("heartbeat", interval_ms=30000)
        man = os.path.join(work, "rollbench-1.yaml")
        manifest(man, "round-1", GOOD, p["health_timeout_s"])
        a = fleet.cmd("apply", manifest=man, hub_pid=hub.pid, timeout_s=300)
        if not a["ok"]:
            raise RuntimeError(f"revision 1: {a.get('failure')}")
        out["revision_1"] = {"all_acknowledged_s": a["devices_s"], "hub_recorded_s": a["hub_s"]}
        log(f"  revision 1 (all at once): every device acknowledged in {a['devices_s']} s")
        time.sleep(2)
        out["idle"] = idle(hub, p["idle_s"])
        log(f"  idle (heartbeats only): hub CPU {out['idle']['hub_cpu_pct']} % of a core")
        runs = []
        for k in range(p["runs"]):
            r = rollout(hub, fleet, work, k + 2, GOOD, p)
            runs.append(r)
            log(f"  rollout {k + 1}/{p['runs']} → revision {r['revision']}: {r['phase']} in {r['total_s']} s, "
                f"{len(r['batches'])} batches, hub CPU {r['hub_cpu_s']} s, RSS peak {r['hub_rss_peak_kib'] / 1024:.1f} MiB, "
                f"{r['counts']['healthy']}/{r['counts']['total']} healthy")
            if r["phase"] != "Complete" or r["counts"]["healthy"] != n:
                raise RuntimeError(f"rollout {k + 1}: {r['phase']} with {r['counts']}: {r.get('reason')}")
            time.sleep(2)
        out["runs"] = runs
        out["good"] = {key: summary([r[key] for r in runs]) for key in ("total_s", "hub_cpu_s", "first_batch_s")}
        out["good"]["hub_rss_peak_mib"] = summary([r["hub_rss_peak_kib"] / 1024 for r in runs], 1)
        out["good"]["batch_s"] = summary([b["duration_s"] for r in runs for b in r["batches"]])
        out["good"]["commit_ms"] = summary([c["plan_ms"] + c["sign_ms"] + c["commit_ms"]
                                            for r in runs for c in r["commits"] if c["devices"]], 1)
        if p["min_ready_run"]:
            r = rollout(hub, fleet, work, p["runs"] + 2, GOOD, p, min_ready_s=1)
            r["waiting_step_ms"] = waiting_step_ms(r, out["idle"])
            out["min_ready_1"] = r
            log(f"  rollout with minReadySeconds 1 → revision {r['revision']}: {r['phase']} in {r['total_s']} s, "
                f"batches {[b['duration_s'] for b in r['batches']]}")
            if r["phase"] != "Complete":
                raise RuntimeError(f"minReadySeconds 1 rollout: {r['phase']}: {r.get('reason')}")
            time.sleep(2)
        if p["failing"]:
            bad = rollout(hub, fleet, work, p["runs"] + 3, f"oci:/var/lib/images/{BAD}", p, wait_cli=True)
            bad["settled_s"] = settle(hub, bad["from"], bad["end_ms"]) if bad["phase"] == "RolledBack" else None
            bad["waiting_step_ms"] = waiting_step_ms(bad, out["idle"])
            out["failing"] = bad
            log(f"  failing rollout → revision {bad['revision']}: {bad['phase']} in {bad['total_s']} s "
                f"(healthTimeout {p['health_timeout_s']} s), {bad['devices_received_revision']} devices got it, "
                f"apply --wait exit {bad['apply_exit']}, all back on revision {bad['from']} {bad['settled_s']} s later")
            if bad["phase"] != "RolledBack" or bad["apply_exit"] != 4:
                raise RuntimeError(f"failing rollout: {bad['phase']}, apply --wait exit {bad['apply_exit']}")
        out["fleet_counters"] = fleet.cmd("counters")
        out["ok"] = True
    except Exception as e:  # recorded, never hidden
        record_failure(out, e, fleet)
    finally:
        teardown(out, fleet, hub, mosq)
    if p["step_iterations"]:
        log(f"  controller step alone ({n} devices) ...")
        out["step"] = step_bench(n, p["step_iterations"])
    return out


def big_doc(out):
    """bench/rollout-results-10k.json (`--devices 10000 --runs 1`) for its paragraph, unless
    that is the file being written."""
    if os.path.abspath(out) == BIG or not os.path.exists(BIG):
        return None
    with open(BIG) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="50 devices, one good and one failing rollout (< 1 min)")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="good rollouts (default 3)")
    ap.add_argument("--ready-after-ms", type=int, default=0,
                    help="simulated start: a new revision reports ready this long after it arrived (default 0)")
    ap.add_argument("--mosquitto-nodelay", action="store_true",
                    help="Mosquitto with TCP_NODELAY behind broker.url instead of the embedded broker (rumqttd "
                         "never sets TCP_NODELAY: statuses wait for the hub's delayed ACK)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/rollout-results.json"))
    ap.add_argument("--report", help="REPORT.md to put the Rollouts section into (default: bench/REPORT.md "
                                     "in a full run writing bench/rollout-results.json)")
    ap.add_argument("--report-from", help="only render the section from this results file into --report")
    args = ap.parse_args()
    if args.report_from:
        with open(args.report_from) as f:
            rollout_report.splice(args.report, rollout_report.section(json.load(f), big_doc(args.report_from)))
        return
    for b in (HUB, LOADGEN):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: cargo build --release --locked -p drover-hub -p drover-bench-loadgen")
    p = dict(n=args.devices, runs=args.runs, ready_after_ms=args.ready_after_ms, health_timeout_s=15,
             timeout=300, step_iterations=200, idle_s=10, min_ready_run=True, failing=True,
             mosquitto_nodelay=args.mosquitto_nodelay)
    if args.smoke:
        p.update(n=50, runs=1, health_timeout_s=5, timeout=60, step_iterations=20, idle_s=2, min_ready_run=False)
    work = tempfile.mkdtemp(prefix="drover-rollout-")
    t = time.monotonic()
    log(f"rollout: {p['n']} devices{' (Mosquitto, TCP_NODELAY)' if p['mosquitto_nodelay'] else ''}, {STRATEGY}, minReadySeconds 0, healthTimeout {p['health_timeout_s']}s ...")
    try:
        row = bench(work, p)
        if not args.smoke and not args.mosquitto_nodelay:
            log(f"rollout: the same against Mosquitto with TCP_NODELAY (one good rollout) ...")
            row["nodelay_broker"] = bench(work, dict(p, runs=1, min_ready_run=False, failing=False, step_iterations=0,
                                                     mosquitto_nodelay=True))
    finally:
        subprocess.run(["rm", "-rf", work])
    doc = {
        "what": "health-gated rollout (issue 11): N simulated devices (drover-loadgen fleet --health) against a "
                "release drover-hub with its embedded broker; apply of a new revision -> RolloutComplete, and a bad "
                "revision -> RolledBack; plus the controller's per-step work alone (hub/examples/rollout_step.rs)",
        "smoke": args.smoke, "strategy": f"RollingUpdate, {STRATEGY}, minReadySeconds 0, "
                                          f"healthTimeout {p['health_timeout_s']}s",
        "ready_after_ms": p["ready_after_ms"], "heartbeat_s": 30,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                    "shared": "other builds may have run at the same time"},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit(),
        "total_s": round(time.monotonic() - t, 1), "result": row,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    report = args.report
    if report is None and not args.smoke and os.path.abspath(args.out) == os.path.join(ROOT, "bench/rollout-results.json"):
        report = os.path.join(ROOT, "bench/REPORT.md")
    section = rollout_report.section(doc, big_doc(args.out))
    print("\n".join(section))
    if report:
        rollout_report.splice(report, section)
        log(f"Rollouts section of {os.path.relpath(report, ROOT)} updated")
    log(f"written: {os.path.relpath(args.out, ROOT)} ({doc['total_s']} s)")
    sys.exit(0 if row.get("ok") and "failure" not in row.get("step", {}) else 1)


if __name__ == "__main__":
    main()
