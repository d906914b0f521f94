"""The "### Agent cost and measured idle uplink" part of REPORT.md's "Telemetry (issue 12)"
section, rendered from bench/agent-telemetry-results.json (bench/agent_telemetry.py writes
it; bench/telemetry.py, which rewrites the whole section, puts this part back). Reads and
writes only REPORT.md; measures nothing. Python 3 stdlib only."""
import os

from common import ROOT, read_json, splice_section
from fanout import summary

SETTINGS = (("off", "0s"), ("10 s (default)", "10s"), ("1 s", "1s"))
OUT = os.path.join(ROOT, "bench/agent-telemetry-results.json")
TITLE = "### Agent cost and measured idle uplink"
# Measured by hand before this bench existed (one agent at a time, 150 s each, 5 idle workloads).
BEFORE = {"cpu_s_per_150s": {"off": 0.02, "10s": 0.03, "1s": 0.18}, "rss_mb": {"10s": 8.25, "off": 8.02}}

def cost_summary(windows, key):
    ws = [w[key] for w in windows]
    secs = sum(w["window_s"] for w in ws)
    return {"total_s": round(secs, 1), "agent_cpu_s_total": round(sum(w["agent_cpu_s"] for w in ws), 3),
            "shims_cpu_s_total": round(sum(w["shims_cpu_s"] for w in ws), 3),
            "agent_cpu_pct": summary([w["agent_cpu_pct"] for w in ws], 4),
            "agent_cpu_s_per_150s": summary([150 * w["agent_cpu_s"] / w["window_s"] for w in ws], 3),
            "shims_cpu_s_per_150s": summary([150 * w["shims_cpu_s"] / w["window_s"] for w in ws], 3),
            "vmrss_mib": summary([w["vmrss_kib"] / 1024 for w in ws], 2),
            "vmhwm_mib": summary([w["vmhwm_kib"] / 1024 for w in ws], 2)}



def fmt(s, unit=""):
    return f"{s['median']}{unit} ({s['min']}–{s['max']})"


def cost_lines(doc):
    r, p = doc["result"]["cost"], doc["params"]
    lines = [f"Agent cost: three agents side by side over the same {p['windows']} windows of {p['window_s']} s, "
             f"each with {p['workloads']} idle workload(s), differing only in `[telemetry] interval` (config file). "
             "CPU is the agent process alone (utime + stime of /proc/PID/stat; its shims are separate processes, "
             "shown apart: telemetry reads cgroup files from the agent, so they should not move); VmRSS and VmHWM at "
             "each window's end. Median (min–max) over the windows; CPU time has 10 ms ticks.", "",
             "| telemetry | agent CPU, % of one core | agent CPU, s per 150 s | … all windows together "
             "| before (by hand, s per 150 s) | shims' CPU, s (all windows) | agent VmRSS, MiB | agent VmHWM, MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for label, interval in SETTINGS:
        key = f"tel-{interval}"
        s = cost_summary(r["windows"], key) if key in r["windows"][0] else None
        if s:
            before = BEFORE["cpu_s_per_150s"]["off" if interval == "0s" else interval]
            total = s["agent_cpu_s_total"]
            per150 = f"{150 * total / s['total_s']:.3f} ({total} s in {s['total_s']:g} s)"
            lines.append(f"| {label} | {fmt(s['agent_cpu_pct'])} | {fmt(s['agent_cpu_s_per_150s'])} | {per150} "
                         f"| {before} | {s['shims_cpu_s_total']} | {fmt(s['vmrss_mib'])} "
                         f"| {fmt(s['vmhwm_mib'])} |")
    return lines + ["", "Before: measured by hand, no script (one agent at a time, 150 s each, 5 idle workloads; "
                        "RSS 8.25 vs 8.02 MB with telemetry at 10 s vs off).", ""]


def ip_level(u):
    """Uplink kbit/s without Ethernet headers and ARP (what the model counts), from the capture."""
    up = [b for b in u["breakdown"] if b["direction"] == "up" and b["kind"] != "ARP"]
    return round(sum(b["bytes"] - 14 * b["frames"] for b in up) * 8 / u["seconds"] / 1000, 4)


BEFORE_UPLINK = os.path.join(ROOT, "bench/agent-telemetry-results-before.json")


def defaults_text(m):
    """The agent defaults a run measured, from the model's figures (older runs: 30 s)."""
    hb, ka = (m or {}).get("heartbeat_every_s", 30), (m or {}).get("keep_alive_s", 30)
    return f"status heartbeat {hb:g} s, telemetry 10 s, MQTT keep-alive {ka:g} s"


def uplink_lines(doc):
    u, p, m = doc["result"]["uplink"], doc["params"], doc.get("model")
    verdict = "within" if u["uplink_kbit_s"] <= 0.25 else "**over**"
    lines = [f"Idle uplink, measured: one agent at the defaults ({defaults_text(m)}) "
             f"with {p['uplink_workloads']} idle workload, in its own network namespace behind a veth pair to the "
             f"hub's broker; the agent side's counters over {u['seconds']:g} s (Ethernet header + IPv4 + TCP + MQTT): "
             f"**{u['uplink_kbit_s']} kbit/s up** ({u['tx_packets']} frames, {u['tx_bytes']:,} B), "
             f"{u['downlink_kbit_s']} kbit/s down: {verdict} the budget of 0.25 kbit/s."]
    if u.get("uplink_kbit_s_per_window"):
        lines[-1] += (f" Per {u['window_s']} s window: up {fmt(u['uplink_kbit_s_per_window'])}, "
                      f"down {fmt(u['downlink_kbit_s_per_window'])} kbit/s over {u['uplink_kbit_s_per_window']['runs']} "
                      "windows.")
    if u.get("breakdown"):
        lines[-1] += (f" Without the Ethernet headers and ARP (IPv4 + TCP + MQTT, as the model counts): "
                      f"{ip_level(u)} kbit/s.")
    if m and "with_ethernet_kbit_s" in m:
        lines[-1] += (f" The model (`drover-bench-wire`, packet sizes; telemetry, status and the ACK of its PUBACK, "
                      f"PINGREQ and the ACK of its PINGRESP): {m['mqtt_kbit_s']} kbit/s of MQTT, "
                      f"{m['with_tcp_ip_headers_kbit_s']} with IPv4/TCP headers, {m['with_ethernet_kbit_s']} with "
                      "Ethernet.")
    before = read_json(BEFORE_UPLINK) if os.path.exists(BEFORE_UPLINK) else None
    if before and before["result"].get("uplink") and before["commit"] != doc["commit"]:
        b, bm = before["result"]["uplink"], before.get("model")
        lines += ["", f"Before (same bench, commit {before['commit']}, {defaults_text(bm)}): "
                      f"**{b['uplink_kbit_s']} kbit/s up** with Ethernet, {ip_level(b)} IPv4-level, over the budget; "
                      f"the model then said {bm['with_tcp_ip_headers_kbit_s']} with IPv4/TCP headers because it had "
                      "no PINGREQ (rumqttc 0.25 sends one every keep-alive whatever else was sent: eventloop.rs "
                      "resets its timer only when it pings; the PINGRESP costs an ACK) and no Ethernet headers. "
                      "Hence the new defaults: a 60 s heartbeat (the hub's `offline_after` 90 → 150 s) and a 60 s "
                      "keep-alive."]
    if u.get("breakdown"):
        lines += ["", "Where the bytes go (tcpdump on the veth over the same seconds; kind by the first MQTT packet in "
                      "each frame; a frame is 14 B Ethernet + 20 B IPv4 + 32 B TCP with timestamps + MQTT):", "",
                  "| direction | kind | frames | bytes | B per frame | kbit/s |", "|---|---|---|---|---|---|"]
        lines += [f"| {b['direction']} | {b['kind']} | {b['frames']} | {b['bytes']:,} | "
                  f"{b['bytes'] / b['frames']:.0f} | {b['kbit_s']} |" for b in u["breakdown"]]
        lines += ["", gap_line(u, m)]
    return lines + [""]


def gap_line(u, m):
    """Where the measured uplink exceeds the model, from the capture's rows."""
    rows = {(b["direction"], b["kind"]): b for b in u["breakdown"]}
    kbit = lambda nbytes: round(nbytes * 8 / u["seconds"] / 1000, 4)  # noqa: E731
    mqtt = lambda key: round(rows[key]["bytes"] / rows[key]["frames"] - 66) if key in rows else None  # noqa: E731
    ping, resp = rows.get(("up", "PINGREQ")), rows.get(("down", "PINGRESP"))
    frames = sum(b["frames"] for b in u["breakdown"] if b["direction"] == "up" and b["kind"] != "ARP")
    text = [f"PINGREQ with the ACK of its PINGRESP {kbit((ping['bytes'] if ping else 0) + 66 * (resp['frames'] if resp else 0))} kbit/s",
            f"Ethernet headers {kbit(14 * frames)} kbit/s",
            f"ARP {rows[('up', 'ARP')]['kbit_s'] if ('up', 'ARP') in rows else 0} kbit/s",
            f"a status is {mqtt(('up', 'PUBLISH status'))} B of MQTT and a telemetry sample "
            f"{mqtt(('up', 'PUBLISH telemetry'))} B"]
    if m:
        text[-1] += f" (the model: {m['status_packet_bytes']} and {m['telemetry_packet_bytes']} B)"
    return "Beyond the model, from these rows: " + "; ".join(text) + "."


def section(doc):
    r = doc["result"]
    lines = [TITLE, "", f"`bench/agent-telemetry.sh` (commit {doc['commit']}, {doc['date']}): a release `drover-hub` "
             "(embedded broker) and release `drover-agent`s registered with it, running real idle containers "
             "(busybox `sleep`, one Deployment each, through the hub).", ""]
    if not r.get("ok"):
        return lines + [f"**Failed**: {r.get('failure')}", ""]
    if "cost" in r:
        lines += cost_lines(doc)
    if "uplink" in r:
        lines += uplink_lines(doc)
    return lines


def splice(report, body):
    """Puts `body` (TITLE …) into the report's "## Telemetry (issue 12)" section, in place
    of an earlier one, else at the section's end."""
    parent = "## Telemetry (issue 12)"
    text = open(report).read() if os.path.exists(report) else ""
    if parent not in text:
        return splice_section(report, parent, f"{parent}\n\n{body}")
    start = text.find(parent)
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end + 1
    sec = text[start:end]
    i = sec.find(TITLE)
    if i >= 0:
        j = sec.find("\n### ", i + 1)
        sec = sec[:i] + body + (sec[j + 1:] if j >= 0 else "")
    else:
        sec = sec.rstrip("\n") + "\n\n" + body
    with open(report, "w") as f:
        f.write(text[:start] + sec + text[end:])


def splice_saved(report):
    """The part from bench/agent-telemetry-results.json, for bench/telemetry.py, which
    rewrites the whole section."""
    doc = read_json(OUT)
    if doc:
        splice(report, "\n".join(section(doc)) + "\n")
