#!/usr/bin/env python3
"""Measures the agent figures issue 2 asks for, on this machine, with the release build:

- agent RSS idle (no workload) and with 10 sleeping busybox workloads;
- private memory of each shim (Private_Clean + Private_Dirty from smaps_rollup);
- time from a manifest appearing in the manifests folder (atomic rename) to the
  container's process running (its shim's status.json says running), median of N runs.

Usage (root): cargo build --release -p drover-agent -p drover-tests --bins
              python3 bench/agent_figures.py [--runs 20] [--json bench/agent-figures.json]
"""
import argparse, json, os, shutil, signal, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/drover-agent")
LAYOUT = os.path.join(ROOT, "target/release/busybox-layout")


def kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def private_kib(pid):
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def manifest(name, image, script="while true; do sleep 1; done"):
    return (f"apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n"
            f"  stopGracePeriod: 1s\n  containers:\n    - name: main\n      image: oci:{image}:latest\n"
            f"      command: [/bin/sh, -c, {json.dumps(script)}]\n      resources: {{memory: 16Mi}}\n")


def put(d, name, text):
    tmp = os.path.join(d, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, f"{name}.yaml"))


def status(state, cid):
    try:
        with open(os.path.join(state + "-run", "containers", cid, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wait(pred, timeout=30.0, step=0.001):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError("timed out")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="drover-bench-")
    state, mdir, image = (os.path.join(work, x) for x in ("state", "manifests", "busybox"))
    os.makedirs(mdir)
    subprocess.run([LAYOUT, image], check=True, stdout=subprocess.DEVNULL)
    parent = "drover-bench-" + str(os.getpid())
    cfg = os.path.join(work, "agent.toml")
    with open(cfg, "w") as f:
        f.write(f'state_dir = "{state}"\nrun_dir = "{state}-run"\nmanifests_dir = "{mdir}"\ncgroup_parent = "{parent}"\nlog_level = "warn"\n')
    agent = subprocess.Popen([AGENT, "run", "--config", cfg], stderr=open(os.path.join(work, "agent.log"), "w"))
    out = {}
    try:
        time.sleep(3)
        out["agent_rss_idle_kib"] = kib(agent.pid, "VmRSS")
        out["agent_pss_idle_kib"] = pss_kib(agent.pid)
        out["agent_private_idle_kib"] = private_kib(agent.pid)

        # Start latency: one workload at a time, removed between runs.
        lat = []
        for i in range(args.runs):
            t0 = time.monotonic()
            put(mdir, "lat", manifest("lat", image))
            wait(lambda: (status(state, "lat.main") or {}).get("state") == "running")
            lat.append((time.monotonic() - t0) * 1000)
            os.remove(os.path.join(mdir, "lat.yaml"))
            wait(lambda: not os.path.exists(os.path.join(state, "workloads", "lat.json")), step=0.01)
        out["manifest_to_running_ms"] = {"median": round(statistics.median(lat), 1), "min": round(min(lat), 1),
                                         "max": round(max(lat), 1), "runs": len(lat)}

        for i in range(10):
            put(mdir, f"w{i}", manifest(f"w{i}", image))
        wait(lambda: all((status(state, f"w{i}.main") or {}).get("state") == "running" for i in range(10)), step=0.05)
        time.sleep(3)
        out["agent_rss_10_workloads_kib"] = kib(agent.pid, "VmRSS")
        out["agent_pss_10_workloads_kib"] = pss_kib(agent.pid)
        shims = [status(state, f"w{i}.main")["shim_pid"] for i in range(10)]
        priv = [private_kib(p) for p in shims]
        out["shim_private_kib"] = {"median": statistics.median(priv), "min": min(priv), "max": max(priv)}
        out["shim_rss_kib"] = statistics.median(kib(p, "VmRSS") for p in shims)
        out["shim_pss_kib"] = statistics.median(pss_kib(p) for p in shims)
        out["agent_binary_bytes"] = os.path.getsize(AGENT)
        for i in range(10):
            os.remove(os.path.join(mdir, f"w{i}.yaml"))
        wait(lambda: not os.listdir(os.path.join(state, "workloads")), step=0.05)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", ctrl, parent)
            if os.path.isdir(p):
                for d, _, _ in sorted(os.walk(p), key=lambda t: -len(t[0])):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
