#!/usr/bin/env python3
"""What probes cost: agent + shims CPU and memory with N workloads each probed over HTTP.

Two phases, each with its own fresh release `drover-agent` (standalone, private state
folder and cgroup parent), one after the other in the same run:
  plain  - N busybox `httpd` workloads, no probes;
  probed - the same N workloads, each with `livenessProbe: {httpGet: {path: /ok}}` every
           PERIOD seconds (the shims run them; the agent only reads verdict changes).
Once every container runs (and, probed, is healthy), W windows of S seconds each: CPU =
utime + stime of the agent and all shims over the window (/proc/PID/stat, so exec'd
children are not counted — an HTTP probe starts none) in % of one core; memory = RSS
(and private) of the agent and the sum over shims from smaps_rollup, sampled at the end
of each window. Reported as median/min/max over windows; the difference probed - plain is
the probes' cost.

Usage: python3 bench/harness/probes.py --out FILE [--workloads 10] [--period 10]
                                       [--windows 5] [--window-s 30] [--agent BIN] [--layout BIN]
                                       [--report bench/REPORT.md]
"""
import argparse, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (REL, ROOT, dump, kill_cgroup_procs, put, read_json, remove_cgroups, rollup,
                    splice_section, stats, umount_under, wait)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime, stime


def manifest(name, image, port, period):
    script = f"mkdir -p /tmp/www && echo ok > /tmp/www/ok && exec httpd -f -p {port} -h /tmp/www"
    y = ["apiVersion: drover.dev/v1", "kind: Workload", f"metadata: {{name: {name}}}", "spec:",
         "  stopGracePeriod: 1s", "  containers:", "    - name: main", f"      image: oci:{image}:latest",
         f"      command: [/bin/sh, -c, {script!r}]".replace("'", '"'), "      resources: {memory: 16Mi}"]
    if period:
        y.append(f"      livenessProbe: {{httpGet: {{path: /ok, port: {port}}}, periodSeconds: {period}}}")
    return "\n".join(y) + "\n"


def phase(args, probed, ports):
    work = tempfile.mkdtemp(prefix="drover-bench-probes-")
    state, mdir, image = (os.path.join(work, d) for d in ("state", "manifests", "busybox"))
    parent = f"drover-bench-probes-{os.getpid()}-{int(probed)}"
    os.makedirs(mdir)
    subprocess.run([args.layout, image], check=True, stdout=subprocess.DEVNULL)
    cfg = os.path.join(work, "agent.toml")
    with open(cfg, "w") as f:
        f.write(f'state_dir = "{state}"\nmanifests_dir = "{mdir}"\ncgroup_parent = "{parent}/agent"\n'
                'log_level = "warn"\n')
    agent = subprocess.Popen([args.agent, "run", "--config", cfg], stderr=open(os.path.join(work, "agent.log"), "w"))
    out = {}
    try:
        wait(lambda: os.path.exists(os.path.join(state, "status.json")), timeout=20, step=0.05, what="agent up")
        names = [f"web{i}" for i in range(args.workloads)]
        for n, port in zip(names, ports):
            put(mdir, n, manifest(n, image, port, args.period if probed else 0))

        def shim(n):
            return read_json(os.path.join(state, "containers", f"{n}.main", "status.json")) or {}

        def settled():
            sts = [shim(n) for n in names]
            ok = all(s.get("state") == "running" for s in sts)
            if probed:
                ok = ok and all(s.get("probes", {}).get("health") == "Healthy" for s in sts)
            return ok
        wait(settled, timeout=120, step=0.2, what="all running" + (" and healthy" if probed else ""))
        time.sleep(args.period + 2)  # past the first probes and the passes they caused
        shims = [shim(n)["shim_pid"] for n in names]
        pids = [agent.pid] + shims
        cpu, agent_rss, shim_rss, shim_private, shim_pss = [], [], [], [], []
        for _ in range(args.windows):
            t0, c0 = time.monotonic(), sum(cpu_ticks(p) for p in pids)
            time.sleep(args.window_s)
            c1, t1 = sum(cpu_ticks(p) for p in pids), time.monotonic()
            cpu.append(100.0 * (c1 - c0) / TICK / (t1 - t0))
            agent_rss.append(rollup(agent.pid)["rss_kib"] / 1024)
            r = [rollup(p) for p in shims]
            shim_rss.append(sum(x["rss_kib"] for x in r) / 1024)
            shim_private.append(sum(x["private_kib"] for x in r) / 1024)
            shim_pss.append(sum(x["pss_kib"] for x in r) / 1024)
        if agent.poll() is not None:
            raise RuntimeError("agent died")
        restarts = sum(1 for n in names if shim(n).get("state") != "running")
        out = {"cpu_pct_one_core": stats(cpu, 3), "agent_rss_mib": stats(agent_rss, 2),
               "shims_rss_mib": stats(shim_rss, 2), "shims_private_mib": stats(shim_private, 2), "shims_pss_mib": stats(shim_pss, 2),
               "total_rss_mib": stats([a + s for a, s in zip(agent_rss, shim_rss)], 2),
               "containers_not_running_at_end": restarts}
    finally:
        for f in os.listdir(mdir):
            os.remove(os.path.join(mdir, f))
        try:
            wait(lambda: not os.listdir(os.path.join(state, "workloads")), timeout=60, step=0.1, what="removed")
        except (TimeoutError, OSError):
            pass
        agent.terminate()
        agent.wait(timeout=10)
        kill_cgroup_procs(parent)
        time.sleep(0.5)
        umount_under(work)
        remove_cgroups(parent)
        subprocess.run(["rm", "-rf", work])
    return out


def section(res):
    """The "## Probes" section of REPORT.md."""
    c, p, q = res["config"], res["plain"], res["probed"]
    fmt = lambda s: f"{s['median']} ({s['min']}–{s['max']})"
    rows = [("agent + shims CPU, % of one core", "cpu_pct_one_core"), ("agent RSS, MiB", "agent_rss_mib"),
            ("shims RSS (sum), MiB", "shims_rss_mib"), ("shims private (sum), MiB", "shims_private_mib"),
            ("shims PSS (sum), MiB", "shims_pss_mib"),
            ("agent + shims RSS, MiB", "total_rss_mib")]
    md = ["## Probes", "",
          f"`bench/probes.sh`: {c['workloads']} busybox `httpd` workloads, each with an HTTP liveness probe "
          f"every {c['period']} s, against the same workloads without probes; each phase a fresh release agent, "
          f"{c['windows']} windows of {c['window_s']:.0f} s (median, min–max over windows, same run). "
          "CPU is utime+stime of the agent and all shims; probes run in the shims' poll loops (no thread, "
          "no process per probe).", "",
          "| | no probes | HTTP liveness every %d s | cost (medians) |" % c["period"], "|---|---|---|---|"]
    for label, k in rows:
        md.append(f"| {label} | {fmt(p[k])} | {fmt(q[k])} | {q[k]['median'] - p[k]['median']:+.3f} |")
    md += ["", "The summed shim RSS counts the probe code's pages of the shared `drover-agent` binary once per "
           "shim (10 times); PSS and private memory are what the device actually pays.",
           "", f"Goal: ≤ +1 % of one core, ≤ +0.5 MiB. Host: {res['host']['cpus']} CPUs, kernel "
           f"{res['host']['kernel']}; results in `bench/probes-results.json`.", ""]
    return "\n".join(md)


def splice(report, body):
    """Replaces the "## Probes" section of REPORT.md (else puts it before "## Left out")."""
    splice_section(report, "## Probes", body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--workloads", type=int, default=10)
    ap.add_argument("--period", type=int, default=10)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--window-s", type=float, default=30)
    ap.add_argument("--agent", default=os.path.join(REL, "drover-agent"))
    ap.add_argument("--layout", default=os.path.join(REL, "busybox-layout"))
    ap.add_argument("--report", help="REPORT.md to put the Probes section into")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("probes.py: must run as root")
    if not os.path.exists(args.layout):
        args.layout = os.path.join(ROOT, "target/debug/busybox-layout")
    import socket
    ports = []
    for _ in range(args.workloads):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    res = {"config": {k: v for k, v in vars(args).items() if k not in ("out",)}}
    res["plain"] = phase(args, False, ports)
    print(f"probes.py: plain {res['plain']['cpu_pct_one_core']}", file=sys.stderr)
    res["probed"] = phase(args, True, ports)
    print(f"probes.py: probed {res['probed']['cpu_pct_one_core']}", file=sys.stderr)
    p, q = res["plain"], res["probed"]
    res["cost"] = {
        "cpu_pct_one_core_median": round(q["cpu_pct_one_core"]["median"] - p["cpu_pct_one_core"]["median"], 3),
        "total_rss_mib_median": round(q["total_rss_mib"]["median"] - p["total_rss_mib"]["median"], 2),
        "agent_rss_mib_median": round(q["agent_rss_mib"]["median"] - p["agent_rss_mib"]["median"], 2),
        "shims_rss_mib_median": round(q["shims_rss_mib"]["median"] - p["shims_rss_mib"]["median"], 2),
        "goal": "cpu <= +1 % of one core, rss <= +0.5 MiB",
    }
    res["host"] = {"kernel": os.uname().release, "cpus": os.cpu_count(),
                   "agent_binary_bytes": os.path.getsize(args.agent)}
    dump(res, args.out)
    print(f"probes.py: wrote {args.out}", file=sys.stderr)
    if args.report:
        splice(args.report, section(res))


if __name__ == "__main__":
    main()
