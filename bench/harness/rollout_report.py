"""The "## Rollouts (issue 11)" section of REPORT.md from bench/rollout-results.json
(bench/rollout.py), with a paragraph from bench/rollout-results-10k.json when given.
Renders and splices; it never measures. Python 3 stdlib only."""
import json
import os

from common import splice_section

TITLE = "## Rollouts (issue 11)"


def _s(x, unit=""):
    if not x:
        return "–", "–", "–"
    return f"{x['median']}{unit}", f"{x['min']}{unit}", f"{x['max']}{unit}"


def _n(n):
    return f"{n:,}" if isinstance(n, int) else "?"


def _poll_ms(bad, idle):
    """Hub CPU outside the controller thread above the idle window's, per `apply --wait` poll."""
    if not idle or "controller_cpu_s" not in bad or not bad.get("seen_s"):
        return None
    other = bad["hub_cpu_s"] - bad["controller_cpu_s"]
    idle_other = (idle["hub_cpu_s"] - idle["controller_cpu_s"]) / idle["window_s"] * bad["seen_s"]
    return round(1000 * (other - idle_other) / (bad["seen_s"] / 0.5), 1)


def _waits(r):
    return [(label, x) for label, x in (("`minReadySeconds: 1` run", r.get("min_ready_1")),
                                         ("failing run", r.get("failing"))) if x and "waiting_step_ms" in x]


def _intro(doc, n):
    return [f"`bench/rollout.sh`{' --smoke' if doc.get('smoke') else ''} ({doc.get('date')}, commit "
            f"{doc.get('commit')}): {_n(n)} simulated devices (`drover-loadgen fleet --health`: real MQTT clients "
            "that verify each signed desired state and report the workload's revision running, its readiness "
            f"probe passing, {doc.get('ready_after_ms')} ms after receiving it; heartbeat every "
            f"{doc.get('heartbeat_s')} s as agents do) against a release `drover-hub` with its embedded broker. "
            "The hub judges them with the code it judges agents with (`fleet::progress::reported_of` → "
            f"`rollout::step`). Strategy: {doc.get('strategy')}: the canary and every batch are 10 % of the "
            "fleet. `minReadySeconds: 0` makes the figures the hub's own overhead (sign → publish → device → "
            "status → step); a real rollout adds per batch the container start, the readiness probe and "
            "`minReadySeconds`. Times run from the `apply` to the hub's RolloutComplete / RolledBack event (read "
            "from its store); hub CPU (utime+stime) and peak RSS over the same window, heartbeats included.", ""]


def _good(r):
    g, runs = r.get("good"), r.get("runs", [])
    if not g:
        return []
    md = [f"| good rollout, {len(runs)} runs | median | min | max |", "|---|---|---|---|"]
    for label, key, unit in (("apply → RolloutComplete", "total_s", " s"),
                             ("apply → first batch sent", "first_batch_s", " s"),
                             ("one batch (every batch of every run)", "batch_s", " s"),
                             ("hub CPU during the rollout", "hub_cpu_s", " s"),
                             ("hub peak RSS (embedded broker included)", "hub_rss_peak_mib", " MiB"),
                             ("plan + sign + commit of a moving step (hub log)", "commit_ms", " ms")):
        md.append(f"| {label} | " + " | ".join(_s(g.get(key), unit)) + " |")
    md.append("")
    for k, run in enumerate(runs):
        b = ", ".join(f"{x['duration_s']}" for x in run["batches"])
        md.append(f"- run {k + 1} (revision {run['from']} → {run['revision']}): {len(run['batches'])} batches of "
                  f"{run['batches'][0]['devices'] if run['batches'] else '?'} devices, seconds each: {b}; "
                  f"{run['statuses_accepted']} statuses accepted; {run['devices_received_revision']} devices "
                  "received the revision")
    m1 = r.get("min_ready_1")
    if m1:
        md.append(f"- with `minReadySeconds: 1` (one run): {m1['phase']} {m1['total_s']} s after the apply; batches "
                  f"{', '.join(str(b['duration_s']) for b in m1['batches'])} s (a device is judged at the first "
                  "step ≥ 1 s after it reported ready; steps run after every status batch and every second)")
    return md + [""]


def _failing(r, doc, n):
    bad = r.get("failing")
    if not bad:
        return []
    poll = _poll_ms(bad, r.get("idle"))
    return [f"**Failing rollout** (image `sensor:bad`: its containers run, readiness never passes; "
            f"`healthTimeout` {doc.get('strategy', '').split('healthTimeout ')[-1]}, `failureThreshold: 1`; "
            f"followed with `drover-hub apply --wait`): {bad.get('end_event')} {bad.get('total_s')} s after the "
            f"apply; **{_n(bad.get('devices_received_revision'))} of {_n(n)} devices ever received the bad "
            f"revision** (the canary), {bad.get('counts', {}).get('failed')} failed; `apply --wait` exited "
            f"{bad.get('apply_exit')}; every device reported revision {bad.get('from')} again ≤ "
            f"{bad.get('settled_s')} s after the RolledBack event (`rollout status` polled every 0.5 s). Hub CPU "
            f"over the window {bad.get('hub_cpu_s')} s, of which `apply --wait` polling `rollout status` every "
            f"0.5 s" + (f" ≈ {poll} ms per poll (every device's status read from the store)" if poll else "")
            + ".", ""]


def _controller(r):
    md, idle, st = [], r.get("idle"), r.get("step") or {}
    if st.get("us"):
        md += [f"**Controller per step, alone** (`hub/examples/rollout_step.rs`: {_n(st['devices'])} devices, the "
               f"same strategy, the hub's own functions, {st['iterations']} iterations of each piece at each of "
               f"the {len(st.get('steps', []))} steps; release profile; µs, warm caches):", "",
               "| work | median | min | max |", "|---|---|---|---|"]
        labels = {"idle": "`progress::step_all` while a batch is updating (runs after every status batch)",
                  "observations": "building the observations of every target",
                  "step": "`rollout::step` alone, a batch turning healthy and the next starting",
                  "advance": "`step_all` then (observations + step)",
                  "clone": "cloning the snapshot the step is staged on",
                  "plan": "fleet `plan` of a moving step (every device compared)",
                  "sign": "encode + sign the batch's desired states, one thread"}
        md += [f"| {label} | " + " | ".join(_s(st["us"][k])) + " |" for k, label in labels.items() if k in st["us"]]
        md.append("")
    elif st.get("failure"):
        md += [f"Controller per step: not measured ({st['failure']}).", ""]
    if idle and _waits(r):
        md += ["**Controller in the running hub while a rollout waits.** An active rollout (also one that only "
               "waits for `minReadySeconds` or a health timeout) is stepped every second and after a status batch "
               "that changes what a rollout judges (a reported workload, presence, a device back from silence) — "
               "not after plain heartbeats. Controller thread CPU with no rollout: "
               f"{idle['controller_cpu_pct']} % of a core ({idle['message_batches_per_s']} status batches/s; whole "
               f"hub {idle['hub_cpu_pct']} %); while a rollout waits: " + "; ".join(
                   f"{label} {x['controller_cpu_pct']} % at {x['message_batches_per_s']} batches/s"
                   for label, x in _waits(r))
               + " (from 10 ms CPU ticks)." + _waits_before(), ""]
    return md


def _waits_before():
    """The same figures from bench/rollout-results-before.json (before heartbeat batches
    stopped stepping rollouts), when present."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rollout-results-before.json")
    try:
        with open(path) as f:
            r = (json.load(f).get("result") or {})
    except (OSError, ValueError):
        return ""
    waits = _waits(r)
    if not waits:
        return ""
    return (" Before (commit c8616f6, [`rollout-results-before.json`](rollout-results-before.json)), when every "
            "status batch stepped every active rollout over every device: " + "; ".join(
                f"{label} {x['controller_cpu_pct']} %" for label, x in waits) + ".")


def _scale(big):
    r = (big or {}).get("result") or {}
    if not r.get("ok") or not r.get("good"):
        return []
    g, st, idle = r["good"], (r.get("step") or {}).get("us", {}), r.get("idle") or {}
    waits = "; ".join(f"{label} {x['controller_cpu_pct']} % of a core, ≈ {x['waiting_step_ms']} ms per step"
                      for label, x in _waits(r))
    bad, nd = r.get("failing") or {}, (r.get("nodelay_broker") or {}).get("good", {})
    return [f"**At {_n(r['n'])} devices** (one run, `bench/rollout.sh --devices 10000 --runs 1 --out "
            f"bench/rollout-results-10k.json`, {big.get('date')}): apply → RolloutComplete {g['total_s']['median']} s "
            f"(batches of 1,000: {g['batch_s']['median']} s median; plan + sign + commit "
            f"{g['commit_ms']['median']} ms), hub CPU {g['hub_cpu_s']['median']} s, peak RSS "
            f"{g['hub_rss_peak_mib']['median']} MiB (against Mosquitto: {nd.get('hub_rss_peak_mib', {}).get('median')} "
            f"MiB, {nd.get('total_s', {}).get('median')} s); failing rollout {bad.get('end_event')} in "
            f"{bad.get('total_s')} s, {_n(bad.get('devices_received_revision'))} devices got the bad revision; "
            f"`rollout status` ≈ {_poll_ms(bad, idle)} ms of hub CPU per call. Step alone: `step_all` "
            f"{st.get('idle', {}).get('median')} µs, `plan` {st.get('plan', {}).get('median')} µs. "
            f"Controller with no rollout {idle.get('controller_cpu_pct')} % of a core; while a rollout waits: "
            f"{waits} (commit {big.get('commit', '?')}"
            + (", before plain heartbeat batches stopped stepping rollouts; not re-run since)."
               if big.get('commit') in ('b112149', 'c8616f6') else ")."), ""]


def section(doc, big=None):
    r = doc.get("result", {})
    n = r.get("n")
    md = [TITLE, ""] + _intro(doc, n)
    if not r.get("ok"):
        md += [f"**Failed**: {r.get('failure')}", ""]
    md += _good(r) + _failing(r, doc, n) + _controller(r)
    nd = r.get("nodelay_broker")
    if nd and nd.get("runs"):
        x = nd["runs"][0]
        md += [f"**Broker latency.** The same good rollout against Mosquitto with `set_tcp_nodelay true` behind "
               f"`broker.url` (one run): {x['total_s']} s, one batch {nd['good']['batch_s']['median']} s (median). "
               "The embedded rumqttd 0.20 never sets TCP_NODELAY on the connections it accepts: a status it "
               "forwards to the hub right after another small write waits for the hub's delayed ACK (~40 ms; "
               "`strace` of the hub: the broker wrote the statuses, the hub's socket read them ~40 ms later in "
               "one read). At 1,000 devices the traffic hides most of it; with few devices every batch pays it "
               "(`bench/rollout.sh --devices 50 --runs 1`, which also runs the Mosquitto comparison: 0.056 s vs "
               "0.012 s per batch, median, here). Mosquitto's default (`set_tcp_nodelay false`) behaves like rumqttd.", ""]
    elif nd:
        md += [f"Mosquitto (TCP_NODELAY) comparison failed: {nd.get('failure')}", ""]
    return md + _scale(big)


def splice(report, lines):
    """Replaces the Rollouts section of REPORT.md (else puts it before "## Left out")."""
    splice_section(report, TITLE, "\n".join(lines) + "\n")
