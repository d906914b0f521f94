#!/usr/bin/env python3
"""What telemetry costs on the device (issue 12), measured: a release `drover-hub` (embedded
broker) and release `drover-agent`s registered with it, each running real idle containers
(busybox `sleep`, one Deployment each, through the hub). Called by bench/agent-telemetry.sh.

1. Agent cost: three agents side by side over the same windows (same machine, same noise),
   each with `--workloads` idle workloads and `[telemetry] interval` 0s (off), 10s (the
   default) or 1s in its config file. Per window and agent: CPU of the agent process alone
   (utime + stime from /proc/PID/stat; its shims are separate processes, reported apart),
   VmRSS and VmHWM at the window's end.
2. Idle uplink: a fourth agent at the defaults (status heartbeat 30 s, telemetry 10 s, one
   workload) runs in its own network namespace behind a veth pair; the hub's broker listens
   on the veth's root-namespace address. The agent side's byte counters
   (/sys/class/net/IF/statistics, Ethernet + IP + TCP + MQTT) over `--uplink-s` seconds give
   kbit/s up and down; with tcpdump installed, a capture on the veth splits the bytes by
   MQTT packet type. Next to it the model of `drover-bench-wire` (packet sizes, no PINGREQ).

Results: bench/agent-telemetry-results.json and the "### Agent cost and measured idle
uplink" part of REPORT.md's "Telemetry (issue 12)" section. Never judges a figure.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))
from common import REL, ROOT, dump, status_kib  # noqa: E402
from fanout import git_commit, summary  # noqa: E402
from fanout_procs import Hub, cpu_s, free_port, tail  # noqa: E402
from agent_procs import Agent, CounterSampler, Netns, capture, cleanup, pcap_breakdown  # noqa: E402
from agent_telemetry_report import OUT, SETTINGS, cost_summary, section, splice  # noqa: E402

WIRE = os.path.join(REL, "drover-bench-wire")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def deploy(hub, work, name, label, workloads):
    """One Deployment per idle workload, selecting devices with `set=<label>`."""
    names = [f"{name}-{i}" for i in range(workloads)]
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        for n in names:
            f.write(f"---\napiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {n}}}\nspec:\n"
                    f"  selector: {{matchLabels: {{set: {label}}}}}\n  template:\n    spec:\n"
                    f"      stopGracePeriod: 1s\n      containers:\n        - name: main\n"
                    f"          image: oci:{os.path.join(work, 'busybox')}:latest\n"
                    f"          command: [/bin/sh, -c, 'exec sleep 100000000']\n"
                    f"          resources: {{memory: 16Mi}}\n")
    r = hub.cli("apply", "-f", path)
    if r.returncode != 0:
        raise RuntimeError(f"apply {path}: {r.stderr.strip()[-500:]}")
    return path, names


def window(agents, seconds):
    """CPU (agent alone; its shims apart) over `seconds`, VmRSS and VmHWM at the end."""
    t0 = time.monotonic()
    c0 = {a.key: (cpu_s(a.pid), a.shims_cpu_s()) for a in agents}
    time.sleep(seconds)
    dt = time.monotonic() - t0
    out = {}
    for a in agents:
        a.check_alive()
        cpu, shims = cpu_s(a.pid) - c0[a.key][0], a.shims_cpu_s() - c0[a.key][1]
        out[a.key] = {"window_s": round(dt, 2), "agent_cpu_s": round(cpu, 3),
                      "agent_cpu_pct": round(100 * cpu / dt, 4), "shims_cpu_s": round(shims, 3),
                      "vmrss_kib": status_kib(a.pid, "VmRSS"), "vmhwm_kib": status_kib(a.pid, "VmHWM")}
    return out


def uplink_result(ns, c0, c1, cap, wall, dt):
    up, down = c1["tx_bytes"] - c0["tx_bytes"], c1["rx_bytes"] - c0["rx_bytes"]
    res = {"seconds": round(dt, 1), "tx_bytes": up, "rx_bytes": down,
           "tx_packets": c1["tx_packets"] - c0["tx_packets"], "rx_packets": c1["rx_packets"] - c0["rx_packets"],
           "uplink_kbit_s": round(up * 8 / dt / 1000, 4), "downlink_kbit_s": round(down * 8 / dt / 1000, 4),
           "interface": ns.agent_if, "counts": "Ethernet header + IPv4 + TCP + MQTT (veth statistics)"}
    if cap:
        res["breakdown"] = pcap_breakdown(cap, ns.agent_ip, *wall)
    return res


def per_window(samples, period):
    """kbit/s up and down per whole window of `period` s between consecutive samples."""
    ups, downs = [], []
    for (ta, a), (tb, b) in zip(samples, samples[1:]):
        if tb - ta >= 0.9 * period:
            ups.append((b["tx_bytes"] - a["tx_bytes"]) * 8 / (tb - ta) / 1000)
            downs.append((b["rx_bytes"] - a["rx_bytes"]) * 8 / (tb - ta) / 1000)
    return {"window_s": period, "uplink_kbit_s_per_window": summary(ups, 4),
            "downlink_kbit_s_per_window": summary(downs, 4)}


def wire_model():
    """The uplink model of `drover-bench-wire` (packet sizes), when the binary is built."""
    if not os.access(WIRE, os.X_OK):
        return None
    r = subprocess.run([WIRE], capture_output=True, text=True)
    return json.loads(r.stdout).get("uplink") if r.returncode == 0 else None


def start(work, p, hub, parent, ns, agents, manifests):
    """Registers and starts the agents, deploys their workloads, waits until all run;
    `agents` and `manifests` grow as it goes (the caller cleans up whatever it made)."""
    cost, up = [], None
    if p["windows"]:
        for _, interval in SETTINGS:
            cost.append(Agent(work, hub, f"tel-{interval}", "cost", interval, parent))
            agents.append(cost[-1])
        path, names = deploy(hub, work, "idle", "cost", p["workloads"])
        manifests.append(path)
        for a in cost:
            a.wait_running(names)
    if ns:
        up = Agent(work, hub, "uplink", "uplink", None, parent, netns=ns)
        agents.append(up)
        path, names = deploy(hub, work, "uplink", "uplink", p["uplink_workloads"])
        manifests.append(path)
        up.wait_running(names)
    return cost, up


def measure(work, p, cost, up, ns, out):
    """Cost windows and the uplink counters, over the same minutes."""
    cap_path, cap = os.path.join(work, "uplink.pcap"), None
    if up:
        cap = ns.cap = capture(ns.host_if, cap_path)
        c0, t0, w0 = ns.counters(), time.monotonic(), time.time()
        sampler = CounterSampler(ns, p["uplink_window_s"])
        sampler.start()
    wins = []
    for w in range(p["windows"]):
        wins.append(window(cost, p["window_s"]))
        log(f"  window {w + 1}/{p['windows']}: " + ", ".join(
            f"{k} {v['agent_cpu_s']} s CPU, RSS {v['vmrss_kib'] / 1024:.2f} MiB" for k, v in wins[-1].items()))
    if wins:
        out["cost"] = {"windows": wins, "settings": {k: cost_summary(wins, k) for k in wins[0]}}
    if up:
        rest = p["uplink_s"] - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
        up.check_alive()
        c1, dt, w1 = ns.counters(), time.monotonic() - t0, time.time()
        sampler.stop()
        if cap:
            cap.send_signal(2)
            cap.wait(10)
        out["uplink"] = uplink_result(ns, c0, c1, cap_path if cap else None, (w0, w1), dt)
        out["uplink"].update(per_window(sampler.samples, p["uplink_window_s"]))
        u = out["uplink"]
        log(f"  uplink over {u['seconds']} s: {u['uplink_kbit_s']} kbit/s up, {u['downlink_kbit_s']} kbit/s down")


def bench(work, p):
    out, hub, ns, agents, manifests = {}, None, None, [], []
    parent = f"drover-bench-tel-{os.getpid()}"
    try:
        subprocess.run([os.path.join(REL, "busybox-layout"), os.path.join(work, "busybox")], check=True,
                       stdout=subprocess.DEVNULL)
        ns = Netns() if p["uplink_s"] else None
        hub = Hub(work, "tel", 10, free_port(), broker_host=ns.host_ip if ns else "127.0.0.1")
        hub.start()
        hub.wait_healthy()
        cost, up = start(work, p, hub, parent, ns, agents, manifests)
        time.sleep(p["warmup_s"])
        measure(work, p, cost, up, ns, out)
        out["ok"] = True
    except Exception as e:  # recorded, never hidden
        out["ok"], out["failure"] = False, f"{type(e).__name__}: {e}"
        log(f"  FAILED: {out['failure']}")
        out["agent_log_tails"] = {a.key: tail(a.log) for a in agents}
    finally:
        out["cleanup"] = cleanup(hub, agents, ns, work, parent, manifests)
        if out["cleanup"]:
            log(f"  cleanup: {'; '.join(out['cleanup'])}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="1 workload, 2 windows of 5 s, 10 s of uplink (< 1 min)")
    ap.add_argument("--workloads", type=int, default=5, help="idle workloads per cost agent (default 5)")
    ap.add_argument("--windows", type=int, default=5, help="cost windows (default 5; 0: no cost agents)")
    ap.add_argument("--window-s", type=int, default=60)
    ap.add_argument("--uplink-s", type=int, default=300, help="uplink measurement, s (default 300; 0: none)")
    ap.add_argument("--uplink-workloads", type=int, default=1)
    ap.add_argument("--uplink-window-s", type=int, default=30,
                    help="uplink windows for median/min/max, s (default 30: one status heartbeat)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--report", help="REPORT.md to put the part into (default: bench/REPORT.md in a full run)")
    ap.add_argument("--report-from", help="only render the part from this results file into --report")
    a = ap.parse_args()
    if a.report_from:
        with open(a.report_from) as f:
            return splice(a.report or os.path.join(ROOT, "bench/REPORT.md"), "\n".join(section(json.load(f))) + "\n")
    if os.geteuid() != 0:
        sys.exit("agent_telemetry.py: must run as root (containers, cgroups, network namespaces)")
    for b in ("drover-hub", "drover-agent", "busybox-layout"):
        if not os.access(os.path.join(REL, b), os.X_OK):
            sys.exit(f"missing target/release/{b} (bench/agent-telemetry.sh builds it)")
    p = {"workloads": a.workloads, "windows": a.windows, "window_s": a.window_s, "uplink_s": a.uplink_s,
         "uplink_workloads": a.uplink_workloads, "uplink_window_s": a.uplink_window_s, "warmup_s": 15}
    if a.smoke:
        p.update(workloads=1, windows=2, window_s=5, uplink_s=10, uplink_window_s=5, warmup_s=3)
        if a.out == OUT:
            a.out = os.path.join(ROOT, "target/bench-smoke/agent-telemetry-results.json")
    log(f"agent telemetry bench: {p}")
    work = tempfile.mkdtemp(prefix="drover-bench-agenttel-")
    t = time.monotonic()
    try:
        result = bench(work, p)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {"commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "params": p,
           "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                       "shared": "other builds may have run at the same time"},
           "seconds": round(time.monotonic() - t, 1), "model": wire_model(), "result": result}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    dump(doc, a.out)
    body = section(doc)
    print("\n".join(body))
    report = a.report or (None if a.smoke else os.path.join(ROOT, "bench/REPORT.md"))
    if report:
        splice(report, "\n".join(body) + "\n")
    sys.exit(0 if result.get("ok") and not result.get("cleanup") else 1)


if __name__ == "__main__":
    main()
