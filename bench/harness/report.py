#!/usr/bin/env python3
"""Merges the parts' JSON files into bench/results.json and writes bench/REPORT.md (+ SVG plots,
drawn by hand: matplotlib is not on this machine).

Usage: python3 bench/harness/report.py --dir RUN_DIR --results bench/results.json --report bench/REPORT.md
         [--mode full|smoke] [--command "bench/run.sh"]
RUN_DIR holds agent.json, wire.json, sizes.json and optionally fanout.json. The fan-out section
(fanout_section) is also spliced into an existing REPORT.md by bench/fanout.py (splice_fanout).
"""
import argparse, datetime, json, os, platform, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dump


def load(d, name):
    p = os.path.join(d, name)
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)
    return None


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def st(s, unit="ms"):
    return f"{s['median']} {unit} ({s['min']}–{s['max']}, n={s['runs']})"


def svg_lines(path, title, xlabel, ylabel, series):
    """series: [(label, colour, [(x, y), ...])]. A plain line chart."""
    w, h, l, r, t, b = 640, 320, 70, 20, 30, 45
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = 0, max(ys) * 1.15 or 1
    sx = lambda x: l + (x - x0) / ((x1 - x0) or 1) * (w - l - r)
    sy = lambda y: h - b - (y - y0) / (y1 - y0) * (h - t - b)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
         f'<line x1="{l}" y1="{h - b}" x2="{w - r}" y2="{h - b}" stroke="black"/>',
         f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h - b}" stroke="black"/>',
         f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">{xlabel}</text>',
         f'<text x="14" y="{h / 2}" text-anchor="middle" transform="rotate(-90 14 {h / 2})">{ylabel}</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        o.append(f'<line x1="{l}" y1="{sy(yv):.1f}" x2="{w - r}" y2="{sy(yv):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{l - 5}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.1f}</text>')
        xv = x0 + (x1 - x0) * i / 4
        o.append(f'<text x="{sx(xv):.1f}" y="{h - b + 15}" text-anchor="middle">{xv:.0f}</text>')
    for k, (label, colour, pts) in enumerate(series):
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        o.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{d}"/>')
        o.append(f'<text x="{l + 10 + 170 * k}" y="{t + 12}" fill="{colour}">{label}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def svg_strip(path, title, groups):
    """groups: [(label, colour, [values])]: one row of dots per group, log-free linear ms axis."""
    w, l, r, rowh, t = 640, 80, 20, 40, 30
    h = t + rowh * len(groups) + 40
    vmax = max(max(v) for _, _, v in groups) * 1.05
    sx = lambda v: l + v / vmax * (w - l - r)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>']
    for i, (label, colour, vals) in enumerate(groups):
        y = t + rowh * i + rowh / 2
        o.append(f'<text x="{l - 8}" y="{y + 4}" text-anchor="end">{label}</text>')
        for v in vals:
            o.append(f'<circle cx="{sx(v):.1f}" cy="{y}" r="3" fill="{colour}" fill-opacity="0.5"/>')
        med = sorted(vals)[len(vals) // 2]
        o.append(f'<line x1="{sx(med):.1f}" y1="{y - 12}" x2="{sx(med):.1f}" y2="{y + 12}" stroke="black" stroke-width="2"/>')
    yb = t + rowh * len(groups)
    o.append(f'<line x1="{l}" y1="{yb}" x2="{w - r}" y2="{yb}" stroke="black"/>')
    for i in range(6):
        v = vmax * i / 5
        o.append(f'<text x="{sx(v):.1f}" y="{yb + 15}" text-anchor="middle">{v:.0f}</text>')
    o.append(f'<text x="{w / 2}" y="{yb + 32}" text-anchor="middle">ms (black bar: median)</text></svg>')
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FANOUT_BEFORE = os.path.join(BENCH, "fanout-results-before.json")

# Issue 8's figures: (key, N, label ({n}: N with thousands separators), {broker: target}, unit).
FANOUT_FIGURES = [
    ("rollout", 10000, "apply → all acknowledged, {n} devices", {"mosquitto": 2.0}, "s"),
    ("rollout", 1000, "apply → all acknowledged, {n} devices", {"embedded": 0.5}, "s"),
    ("single", 10000, "one-device change in {n} → its acknowledgement", {"embedded": 50, "mosquitto": 50}, "ms"),
    ("register", 10000, "registration of {n} devices (`device import`)", {"embedded": 5.0, "mosquitto": 5.0}, "s"),
    ("start", 10000, "hub start, {n} devices → API healthy and every device has its desired state",
     {"embedded": 5.0, "mosquitto": 5.0}, "s"),
    ("cpu", 10000, "steady state, {n} devices heartbeating every {hb} s: hub CPU (% of one core)",
     {"embedded": 5.0, "mosquitto": 5.0}, "%"),
    ("rss", 10000, "steady state: hub RSS (embedded: broker inside the hub)", {"embedded": 100, "mosquitto": 100}, "MiB"),
    ("p99", 10000, "API p99 during a {n}-device apply", {"embedded": 100, "mosquitto": 100}, "ms"),
]


def load_before(path=FANOUT_BEFORE):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _now(row, key):
    """The figure's summary ({median, min, max, runs}) in the figure's unit, or None."""
    def get(*ks):
        v = row
        for k in ks:
            v = (v or {}).get(k)
        return v
    s = {"rollout": get("rollout", "hub_s"), "single": get("single_device", "device_s"),
         "register": get("registration", "seconds"), "start": get("hub_start", "total_s"),
         "cpu": get("steady", "hub_cpu_pct"), "rss": get("steady", "hub_rss_mib"),
         "p99": get("api_probe", "p99_ms")}[key]
    if s and key == "single":
        s = {k: (round(v * 1000, 1) if k != "runs" and isinstance(v, (int, float)) else v) for k, v in s.items()}
    return s


def _before(before, broker, n, key):
    """The before column: what the benchmark of commit ba75934 measured, or why not."""
    rows = [r for r in (before or {}).get("rows", []) if r.get("n") == n and r.get("broker", "").startswith(
        "rumqttd" if broker == "embedded" else "mosquitto")]
    r = rows[0] if rows else {}
    if key == "rollout" and r.get("rollout_hub_s") is not None:
        return f"{r['rollout_hub_s']:.2f} s (1 run)"
    if key == "register":
        return "no bulk path (one POST per device is quadratic: 1,000 took 5.4 s)"
    if key == "start" and r.get("hub_start_s") is not None:
        return f"{r['hub_start_s']:.1f} s (to API healthy only)"
    if key == "rss" and r.get("hub_rss_idle_kib") is not None:
        return f"{r['hub_rss_idle_kib'] / 1024:.1f} MiB (idle, no heartbeats)"
    return "not measured"


def _fmt(s, unit):
    if not s:
        return "–"
    nd = 0 if unit == "ms" and s["median"] >= 100 else (1 if unit in ("ms", "MiB") else 2)
    f = lambda x: f"{x:.{nd}f}"
    sep = "" if unit == "%" else " "
    return f"{f(s['median'])}{sep}{unit} ({f(s['min'])}–{f(s['max'])}, n={s['runs']})"


def _med(s, unit):
    """Just the median, for the details table."""
    if not s:
        return "–"
    return f"{s['median']:.2f}{'' if unit == '%' else ' '}{unit}" if unit != "MiB" else f"{s['median']:.1f} MiB"


def fanout_section(doc, before):
    """The body of REPORT.md's "Hub fan-out" section (issue 8's table, then details)."""
    rows = {(r["n"], r.get("broker_key")): r for r in doc.get("rows", []) if "broker_key" in r}
    smoke = doc.get("smoke")
    if smoke:  # one small row stands for every figure; the targets are for the full sizes
        rows = {(n, b): r for (_, b), r in rows.items() for n in (1000, 10000)}
    big = next((r for (n, _), r in rows.items() if n == 10000), {})
    hb = ((big.get("steady") or {}).get("heartbeat_s")) or 30
    probe_paths = " and ".join(f"`GET {p}`" for p in (big.get("api_probe") or {}).get("paths", []))
    md = ["Written by `bench/fanout.sh` ([`fanout-results.json`](fanout-results.json); before: "
          "[`fanout-results-before.json`](fanout-results-before.json), the benchmark of commit ba75934, one run "
          f"each). Run {doc.get('date', '?')} at commit {doc.get('commit', '?')}, {doc.get('total_s', '?')} s, on {doc['machine']['cpus']} cores shared "
          "with other builds: the lead re-runs it alone for the figures that count. N simulated devices are real "
          "MQTT clients (one `drover-loadgen fleet` process on the same machine, so it competes with the hub for the "
          "2 cores) behaving like agents: last will, retained presence, a status sealed with the device credential "
          "for every new generation, re-sent after reconnects and on every heartbeat. Each figure: median (min–max, "
          "n runs)." + (" **Smoke run** (N=50, one run each): not the issue's sizes, so no ✓/✗." if smoke else ""), "",
          "| figure | broker | target | before | now |", "|---|---|---|---|---|"]
    for key, n, label, targets, unit in FANOUT_FIGURES:
        if smoke and n != 10000:
            continue
        for broker in ("embedded", "mosquitto"):
            r = rows.get((n, broker))
            if r is None:
                continue
            s = _now(r, key)
            target = targets.get(broker)
            mark = "" if target is None or not s or smoke else (" ✓" if s["median"] <= target else " ✗")
            now = _fmt(s, unit) + mark if s else ("failed: " + str(r.get("failure")) if not r.get("ok") else "–")
            tgt = "–" if target is None else f"≤ {target:g}{'' if unit == '%' else ' '}{unit}"
            label_n = label.format(n=f"{r['n']:,}", hb=f"{hb:g}")
            md.append(f"| {label_n} | {r['broker']} | {tgt} | {'–' if smoke else _before(before, broker, n, key)} | {now} |")
    md += ["", "How each figure is taken:", "",
           "- *apply → all acknowledged*: from spawning `drover-hub apply -f` (a Deployment selecting every device, "
           "a new env value each run) until the hub has recorded every device's acknowledging status "
           "(`status_accepted` in `GET /v1/stats`, polled every 10 ms); the devices' own PUBACK times are in the JSON "
           "(`devices_s`).",
           "- *one-device change*: `apply` of a `kind: Device` object giving one device the label `pick=yes`, so that a "
           "second Deployment (selector `pick=yes`) lands on it; until that device's status for the new generation "
           "is acknowledged by the broker (PUBACK). No other device may change. "
           + ("Like drover-agent and the hub, the devices set TCP_NODELAY (`bench/fanout.sh --nagle` leaves "
              "Nagle's algorithm on, as both did before issue 8: the status after the PUBACK then waits for the "
              "broker's delayed ACK, ~40 ms more)." if doc.get("devices_tcp_nodelay")
              else "The devices leave Nagle's algorithm on (`--nagle`), unlike drover-agent: the status that follows "
                   "the PUBACK of the desired state can wait for the broker's delayed TCP ACK (~40 ms)."),
           "- *registration*: `drover-hub device import devices.csv -o json` (one line `sim-i,fleet=bench` per device), "
           "timed around the CLI, on a fresh hub each run.",
           "- *hub start*: SIGTERM the hub, spawn it again on the same store; until both `GET /v1/healthz` answers and "
           "every device has received a validly signed desired state since (the republished one). With the embedded "
           "broker the devices lose their connection and reconnect (back-off from 100 ms, doubling, capped at 1 s, "
           "jittered 0.5–1.5×); with Mosquitto they stay connected.",
           f"- *steady state*: every device sends its sealed status every {hb:g} s, at a phase of i/N of the period; "
           "after a short warm-up, hub utime+stime over each window (60 s in a full run); RSS is the peak of 1 s samples (VmRSS). With the "
           "embedded broker, rumqttd lives in the hub process and is included; Mosquitto's own figures are below.",
           f"- *API latency*: during each apply, two threads of the load generator issue {probe_paths} every 10 ms "
           "each (keep-alive connections); p99 per run, nearest rank.", "",
           "Details (medians unless said): *connect all* — every device connected (connection errors meanwhile); "
           "*apply cmd* — the `drover-hub apply` process alone; *one device* — its apply cmd returned / the device "
           "received the new desired state / the device's status was acknowledged, from the spawn of `apply`.", "",
           "| broker | N | connect all (errors) | apply cmd | hub CPU per apply | one device: cmd / received / ack "
           "| API p50 / max (count, errors) | Mosquitto CPU / RSS (steady) | hub start: API healthy |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in doc.get("rows", []):
        if "broker_key" not in r:
            continue
        ro, pr, st, hs = r.get("rollout") or {}, r.get("api_probe") or {}, r.get("steady") or {}, r.get("hub_start") or {}
        c = r.get("connect") or {}
        conn = (f"{c['connect_all_s']:.2f} s ({sum((c.get('errors') or {}).values())})"
                if c.get("connect_all_s") is not None else "–")
        sd = r.get("single_device")
        one = "–"
        if sd:
            med = lambda k: statistics.median(a[k] for a in sd["runs"] if a.get(k) is not None) * 1000
            one = f"{med('apply_cmd_s'):.0f} / {med('received_s'):.0f} / {med('devices_s'):.0f} ms"
        probe = (f"{pr['p50_ms']['median']:.1f} ms / {pr.get('max_ms'):.0f} ms ({pr.get('count')}, "
                 f"{pr.get('errors')})") if pr and pr.get("p50_ms") else "–"
        bro = (f"{_med(st.get('broker_cpu_pct'), '%')} / {_med(st.get('broker_rss_mib'), 'MiB')}"
               if st.get("broker_cpu_pct") else "–")
        md.append(f"| {r['broker']} | {r['n']} | {conn} "
                  f"| {_med(ro.get('apply_cmd_s'), 's')} | {_med(ro.get('hub_cpu_s'), 's')} | {one} | {probe} | {bro} "
                  f"| {_med(hs.get('healthy_s'), 's')} |")
    failed = [r for r in doc.get("rows", []) if not r.get("ok")]
    for r in failed:
        md.append(f"\n**Failed**: {r.get('broker')} N={r.get('n')}: {r.get('failure')}")
    return md


def splice_fanout(report, doc, before=None):
    """Replaces the "## Hub fan-out" section of an existing REPORT.md (appends it if absent)."""
    text = open(report).read() if os.path.exists(report) else "# Drover benchmark report\n"
    body = "\n".join(["## Hub fan-out", ""] + fanout_section(doc, before or load_before()) + [""])
    start = text.find("## Hub fan-out")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + ("\n" + text[end + 1:] if end >= 0 else "")
    with open(report, "w") as f:
        f.write(text)


def flat_rows(obj, prefix=""):
    """Flattens unknown JSON (the fan-out part's) into (key, value) rows."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flat_rows(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(obj, list) and len(obj) <= 20:
        for i, v in enumerate(obj):
            yield from flat_rows(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


# Every section this script writes, measured or not in a given run.
OWN_SECTIONS = {"Start latency", "Agent memory", "Start latency / agent memory", "Hub fan-out",
                "Wire size", "Binary sizes", "Left out"}


def kept_sections(report, md):
    """Sections of the existing REPORT.md that other scripts write (bench/probes.sh's
    "Probes", bench/rollout.sh's "Rollouts", …) and this run does not: kept as they are,
    so that a full run never drops figures it did not measure."""
    try:
        with open(report) as f:
            old = f.read()
    except FileNotFoundError:
        return []
    ours = {line[3:].strip() for line in md if line.startswith("## ")} | OWN_SECTIONS
    kept, current = [], None
    for line in old.split("\n"):
        if line.startswith("## "):
            current = None if line[3:].strip() in ours else []
            if current is not None:
                kept.append(current)
        elif line.startswith("# "):
            current = None
        if current is not None:
            current.append(line)
    return [line for section in kept for line in section]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--seconds", type=float)
    args = ap.parse_args()
    agent, wire, sizes = (load(args.dir, n) for n in ("agent.json", "wire.json", "sizes.json"))
    fanout = load(args.dir, "fanout.json")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = (agent or {}).get("host", {})
    results = {"mode": args.mode, "date": when, "duration_s": args.seconds,
               "host": dict(host, machine=platform.machine()),
               "agent": agent, "wire": wire, "binary_sizes": sizes, "fanout": fanout}
    dump(results, args.results)

    outdir = os.path.dirname(os.path.abspath(args.report))
    plots = os.path.join(outdir, "plots")
    os.makedirs(plots, exist_ok=True)
    md = [f"# Drover benchmark report", "",
          f"Run: `{args.command}` ({args.mode}), {when}"
          + (f", {args.seconds:.0f} s" if args.seconds else "") + ". "
          f"Host: {host.get('cpus', '?')} CPUs {platform.machine()}, kernel {host.get('kernel', '?')}, "
          "cgroup v1 (hybrid), Debian 12; shared machine (other builds ran at the same time), so read the "
          "ratios measured in the same loop rather than absolute times. Raw figures: "
          f"[`results.json`](results.json).", ""]
    if agent:
        lat = agent["start_latency"]
        m = agent["agent_memory"]
        u = agent["updates"]
        n = m["workloads"]
        md += ["## Start latency", "",
               "Time from a desired state reaching the agent (manifest renamed into the manifests folder) to the "
               "container's first output line (`echo ready`, read from `<state>/logs/<wl>/main.log`, polled every "
               "1 ms). In the same loop (order rotated each round), on the same bundle — the agent's own "
               "`config.json` for that container with a copy of its rootfs — `crun run` and `runc run`, from spawn "
               "to the first line on their stdout. crun runs as `unshare -m sh -c 'umount /sys/fs/cgroup/unified "
               "&& exec crun run …'` (it refuses hybrid cgroup hosts); that wrapper alone is measured too. "
               "The agent's figure includes inotify, manifest parsing, the overlay mount, the spawn of a shim and "
               "libcontainer create+start; the runtimes get a ready bundle.", "",
               "| path | median | min | max | runs |", "|---|---|---|---|---|"]
        for k, label in (("drover", "drover-agent: manifest → first output"), ("crun", "`crun run` (incl. wrapper)"),
                         ("runc", "`runc run`"), ("crun_wrapper_ms", "wrapper alone (unshare+umount+exec true)")):
            s = lat[k]
            md.append(f"| {label} | {s['median']} ms | {s['min']} ms | {s['max']} ms | {s['runs']} |")
        hp = agent.get("hub_path")
        if hp:
            s = hp["hub_apply_to_first_output"]
            md.append(f"| hub path: `drover-hub apply` → first output (release hub, MQTT, registered agent) | "
                      f"{s['median']} ms | {s['min']} ms | {s['max']} ms | {s['runs']} |")
        md += ["", f"Ratios of medians: drover / crun = **{lat['ratio_drover_over_crun']}×** "
               f"({lat['ratio_drover_over_crun_without_wrapper']}× against crun without its wrapper), "
               f"drover / runc = **{lat['ratio_drover_over_runc']}×**"
               + (f"; hub path / crun = {hp['ratio_over_crun']}× (the `apply` CLI alone: "
                  f"{hp['apply_cli_ms']['median']} ms)" if hp else "") + ".",
               "", "![start latency](plots/latency.svg)", ""]
        svg_strip(os.path.join(plots, "latency.svg"), "Start latency, every run",
                  [("drover", "#1f77b4", lat["raw_ms"]["drover"]), ("crun", "#2ca02c", lat["raw_ms"]["crun"]),
                   ("runc", "#d62728", lat["raw_ms"]["runc"])])

        def mrow(label, x):
            return f"| {label} | {mib(x['rss_kib'])} | {mib(x['pss_kib'])} | {mib(x['private_kib'])} |"
        md += ["## Agent memory", "",
               "Release `drover-agent` in standalone mode; `/proc/PID/smaps_rollup`, median of 5 samples 0.2 s apart. "
               "Workloads are busybox `while true; do sleep 1; done` with a 16 MiB limit. Each container has its own "
               "`drover-agent shim` process; its RSS is mostly the shared binary, so its private memory is the cost "
               "per container. The shims run the agent's own binary, so once one runs, the binary's pages are shared and "
               "leave the agent's *private* figure (it drops with 1 workload and rises again when all are gone): PSS is "
               "the fair figure.", "",
               "| agent | RSS | PSS | private |", "|---|---|---|---|",
               mrow("idle, no workload", m["agent_idle"]), mrow("1 workload", m["agent_1_workload"]),
               mrow(f"{n} workloads", m["agent_n_workloads"]),
               mrow(f"{n} workloads + 1 updated workload, before {u['count']} updates", u["agent_before"]),
               mrow(f"same, after {u['count']} updates", u["agent_after"]),
               mrow("idle again, everything removed", m["agent_idle_after_all"]), "",
               "| per shim | private | RSS | PSS |", "|---|---|---|---|"]
        for label, s in ((f"1 workload", m["shim_1_workload"]), (f"{n} workloads (median, min–max)", m["shim_n_workloads"]),
                         (f"{n} workloads after {u['count']} updates", u["shims_after"])):
            md.append(f"| {label} | {s['private_kib']['median']:.0f} KiB ({s['private_kib']['min']}–{s['private_kib']['max']}) "
                      f"| {mib(s['rss_kib']['median'])} | {mib(s['pss_kib']['median'])} |")
        md += ["", f"**Updates.** {u['count']} desired-state updates of one workload (`restartPolicy: Never`, command "
               "`true`, env `V` alternating `a`/`b`, so the manifest never grows), each a replacement; each waits "
               f"until {u['signal']}. Update → new container exited: {st(u['update_to_exited_ms'])}. "
               f"Agent RSS {'+' if u['agent_rss_growth_kib'] >= 0 else ''}{u['agent_rss_growth_kib']} KiB, "
               f"PSS {'+' if u['agent_pss_growth_kib'] >= 0 else ''}{u['agent_pss_growth_kib']} KiB after the updates.",
               "", "![agent memory across updates](plots/memory.svg)", ""]
        c = u["curve_kib"]
        svg_lines(os.path.join(plots, "memory.svg"), f"drover-agent memory across {u['count']} updates",
                  "updates applied", "MiB",
                  [("RSS", "#1f77b4", [(x, r / 1024) for x, r, _ in c]), ("PSS", "#ff7f0e", [(x, p / 1024) for x, _, p in c])])
    else:
        md += ["## Start latency / agent memory", "", "Not measured in this run (agent part failed).", ""]
    if fanout is not None:
        md += ["## Hub fan-out", ""]
        if isinstance(fanout.get("rows"), list) and all("broker_key" in r for r in fanout["rows"]):
            md += fanout_section(fanout, load_before()) + [""]
        else:
            md += ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in flat_rows(fanout)] + [""]
    else:
        md += ["## Hub fan-out", "", "Not in this run (`bench/fanout.sh` missing, not executable or failed).", ""]
    if wire:
        md += ["## Wire size", "",
               "Printed by `target/release/drover-bench-wire` (crate `bench/wire`): postcard in drover-protocol's "
               "versioned envelope, exactly as published (`sign_desired`, `seal_status`), next to the same content "
               "as JSON (`serde_json::to_vec`; signature / MAC as base64 strings). Workloads are modelled on the demo "
               "and example manifests (images, env, limits, mounts, a device). Telemetry is drover-protocol's "
               "`Telemetry` sealed as the agent publishes it (`seal_telemetry`: envelope + 16-byte truncated HMAC), with "
               "the magnitudes of a board up for a month; the `before` rows are the sample `bench/wire` defined before "
               "the protocol had a telemetry type (fewer fields, no MAC).",
               "", "| message | wire bytes | JSON bytes | JSON / wire |", "|---|---|---|---|"]
        for r in wire["rows"]:
            md.append(f"| {r['message']} | {r['wire_bytes']} | {r['json_bytes']} | {r['json_over_wire']}× |")
        md.append("")
        u = wire.get("uplink")
        if u:
            md += [f"Idle uplink of one device with {u['workloads']} workload at the agent's defaults (a telemetry sample "
                   f"every {u['telemetry_every_s']:g} s, QoS 0, {u['telemetry_packet_bytes']} B as an MQTT packet; a status "
                   f"heartbeat every {u['heartbeat_every_s']:g} s, QoS 1, {u['status_packet_bytes']} B): "
                   f"**{u['mqtt_kbit_s']} kbit/s** of MQTT, {u['with_tcp_ip_headers_kbit_s']} kbit/s with IPv4/TCP headers "
                   f"(52 B per segment, one ACK per PUBACK); budget {u['budget_kbit_s']} kbit/s.", ""]
    if sizes:
        md += ["## Binary sizes", "", "Release profile (opt-level z, fat LTO, panic=abort, stripped); aarch64/armv7 "
               "built with `cross/build.sh`. Extra rows: the hub and the example images' binaries.", "",
               "| binary | x86_64 | aarch64 | armv7 |", "|---|---|---|---|"]
        by = {}
        for r in sizes["rows"]:
            by.setdefault(r["binary"], {})[r["arch"]] = (f"{r['bytes'] / 1048576:.2f} MiB ({r['bytes']} B)"
                                                         if "bytes" in r else r["note"])
        for b, v in by.items():
            md.append(f"| `{b}` | {v.get('x86_64', '')} | {v.get('aarch64', '')} | {v.get('armv7', '')} |")
        md.append("")
    md += kept_sections(args.report, md)
    md += ["## Left out", "",
           "- Plots are hand-written SVG (no matplotlib on the machine).",
           "- The telemetry sample is a bench-defined struct: the protocol has no telemetry type yet.",
           "- `drover-hub` is not cross-built for ARM by the benchmark (only the agent is, when missing).", ""]
    with open(args.report, "w") as f:
        f.write("\n".join(md))
    print(f"report.py: wrote {args.results} and {args.report}", file=sys.stderr)


if __name__ == "__main__":
    main()
