"""The "## Rollouts (issue 11)" section of REPORT.md from bench/rollout-results.json
(bench/rollout.py). Renders and splices; it never measures. Python 3 stdlib only."""
import os

TITLE = "## Rollouts (issue 11)"


def _s(x, unit=""):
    if not x:
        return "–", "–", "–"
    return f"{x['median']}{unit}", f"{x['min']}{unit}", f"{x['max']}{unit}"


def _poll_ms(bad, idle):
    """Hub CPU outside the controller thread above the idle window's, per `apply --wait` poll."""
    if not idle or "controller_cpu_s" not in bad or not bad.get("seen_s"):
        return None
    other = bad["hub_cpu_s"] - bad["controller_cpu_s"]
    idle_other = (idle["hub_cpu_s"] - idle["controller_cpu_s"]) / idle["window_s"] * bad["seen_s"]
    return round(1000 * (other - idle_other) / (bad["seen_s"] / 0.5), 1)


def section(doc):
    r = doc.get("result", {})
    n = r.get("n")
    md = [TITLE, "",
          f"`bench/rollout.sh`{' --smoke' if doc.get('smoke') else ''} ({doc.get('date')}, commit {doc.get('commit')}): "
          f"{n} simulated devices (`drover-loadgen fleet --health`: real MQTT clients that verify each signed desired "
          "state and report the workload's revision running with a passing readiness probe "
          f"{doc.get('ready_after_ms')} ms after receiving it, heartbeat every {doc.get('heartbeat_s')} s) against a "
          "release `drover-hub` with its embedded broker. The hub judges them with the same code as agents "
          "(`fleet::progress::reported_of` → `rollout::step`). Strategy: "
          f"{doc.get('strategy')} — every step moves {'10 %' if n else '?'} of the fleet. `minReadySeconds: 0` so that "
          "the figures are the hub's own overhead (publish → device → status → step); a real rollout adds, per "
          "batch, the container start, the readiness probe and `minReadySeconds`. Times run from the `apply` to "
          "the hub's RolloutComplete / RolledBack event (read from its store); hub CPU (utime+stime) and peak RSS "
          "over the same window, 30 s heartbeats included.", ""]
    if not r.get("ok"):
        md += [f"**Failed**: {r.get('failure')}", ""]
    g = r.get("good")
    if g:
        runs = r.get("runs", [])
        md += [f"| good rollout, {len(runs)} runs | median | min | max |", "|---|---|---|---|"]
        for label, key, unit in (("apply → RolloutComplete", "total_s", " s"),
                                 ("apply → first batch sent", "first_batch_s", " s"),
                                 ("one batch (every batch of every run)", "batch_s", " s"),
                                 ("hub CPU during the rollout", "hub_cpu_s", " s"),
                                 ("hub peak RSS", "hub_rss_peak_mib", " MiB"),
                                 ("plan + sign + commit of a moving step (hub log)", "commit_ms", " ms")):
            md.append(f"| {label} | " + " | ".join(_s(g.get(key), unit)) + " |")
        md.append("")
        for k, run in enumerate(runs):
            b = ", ".join(f"{x['duration_s']}" for x in run["batches"])
            md.append(f"- run {k + 1} (revision {run['from']} → {run['revision']}): {len(run['batches'])} batches "
                      f"of {run['batches'][0]['devices'] if run['batches'] else '?'} devices, seconds each: {b}; "
                      f"{run['statuses_accepted']} statuses accepted, {run['devices_received_revision']} devices "
                      "received the revision")
        md.append("")
    nd = r.get("nodelay_broker")
    if nd and nd.get("runs"):
        x = nd["runs"][0]
        md += [f"The same good rollout against Mosquitto with `set_tcp_nodelay true` behind `broker.url` (one run): "
               f"{x['total_s']} s, one batch {nd['good']['batch_s']['median']} s (median) — the embedded rumqttd "
               "never sets TCP_NODELAY on its connections, so a status it forwards to the hub right after another "
               "small write waits for the hub's delayed ACK (up to ~40 ms; seen with `strace`: the broker sent the "
               "statuses, the hub's socket got them ~40 ms later in one read). Mosquitto's default "
               "(`set_tcp_nodelay false`) behaves like rumqttd.", ""]
    elif nd:
        md += [f"Mosquitto (TCP_NODELAY) comparison failed: {nd.get('failure')}", ""]
    idle = r.get("idle")
    if idle:
        md += [f"Hub CPU with only the heartbeats ({n // 30 if n else '?'} statuses/s), no rollout: "
               f"{idle['hub_cpu_pct']} % of a core over {idle['window_s']} s (controller thread "
               f"{idle.get('controller_cpu_pct')} %, {idle.get('message_batches_per_s')} status batches/s).", ""]
    waits = [(label, x) for label, x in (("minReadySeconds 1 run", r.get("min_ready_1")),
                                          ("failing run", r.get("failing"))) if x and "waiting_step_ms" in x]
    if waits and idle:
        md += ["**Controller per step, in the running hub**: while a rollout waits it is stepped after every "
               "status batch (and every second), each step O(devices). Controller thread CPU above the idle "
               "window over those steps: " + "; ".join(
                   f"{label}: {x['controller_cpu_pct']} % of a core at {x['message_batches_per_s']} status "
                   f"batches/s → ≈ {x['waiting_step_ms']} ms per step" for label, x in waits)
               + " (estimates from 10 ms CPU ticks).", ""]
    m1 = r.get("min_ready_1")
    if m1:
        md += [f"With `minReadySeconds: 1` (one run): {m1['phase']} {m1['total_s']} s after the apply; batches "
               f"{', '.join(str(b['duration_s']) for b in m1['batches'])} s (a device is judged at the first step "
               "≥ 1 s after it reported ready: steps run after every status batch and every second); hub CPU "
               f"{m1['hub_cpu_s']} s.", ""]
    bad = r.get("failing")
    if bad:
        md += [f"**Failing rollout** (image `sensor:bad`: containers run, readiness "
               f"never passes; `healthTimeout` {doc.get('strategy', '').split('healthTimeout ')[-1]}, "
               "`failureThreshold: 1`, followed with `drover-hub apply --wait`): "
               f"{bad.get('end_event')} {bad.get('total_s')} s after the apply; "
               f"**{bad.get('devices_received_revision')} of {n} devices ever received the bad revision** "
               f"(the canary); {bad.get('counts', {}).get('failed')} failed; `apply --wait` exited "
               f"{bad.get('apply_exit')}; every device reported revision {bad.get('from')} again "
               f"≤ {bad.get('settled_s')} s after the RolledBack event (`rollout status` polled every 0.5 s). Hub CPU over the window "
               f"{bad.get('hub_cpu_s')} s (includes `apply --wait` polling `rollout status` every 0.5 s"
               + (f": ≈ {poll_ms} ms of hub CPU per poll outside the controller" if (poll_ms := _poll_ms(bad, r.get('idle'))) else "")
               + ").", ""]
    st = r.get("step") or {}
    if st.get("us"):
        md += [f"**Controller per step, alone** (`hub/examples/rollout_step.rs`, {st['devices']} devices, the same "
               f"strategy, {st['iterations']} iterations of each piece at each of the {len(st.get('steps', []))} "
               "steps; release profile; µs):", "",
               "| work | median | min | max |", "|---|---|---|---|"]
        labels = {"idle": "`step_all` while a batch is still updating (after every status batch and every second)",
                  "observations": "building the observations of every target",
                  "step": "`rollout::step` alone, a batch turning healthy and the next starting",
                  "advance": "`step_all` then (observations + step)",
                  "clone": "cloning the snapshot the step is staged on",
                  "plan": "fleet `plan` of a moving step (every device compared)",
                  "sign": "encode + sign the batch's desired states, one thread"}
        for k, label in labels.items():
            if k in st["us"]:
                md.append(f"| {label} | " + " | ".join(_s(st["us"][k])) + " |")
        md.append("")
    elif st.get("failure"):
        md += [f"Controller per step: not measured ({st['failure']}).", ""]
    return md


def splice(report, lines):
    """Replaces the Rollouts section of REPORT.md (else puts it before "## Left out")."""
    body = "\n".join(lines) + "\n"
    text = open(report).read() if os.path.exists(report) else "# Drover benchmark report\n"
    start = text.find(TITLE)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + ("\n" + text[end + 1:] if end >= 0 else "")
    elif "## Left out" in text:
        i = text.find("## Left out")
        text = text[:i] + body + "\n" + text[i:]
    else:
        text = text.rstrip("\n") + "\n\n" + body
    with open(report, "w") as f:
        f.write(text)
