#!/usr/bin/env python3
"""Measures the hub figures issue 3 asks for (release build, this machine):

- time from `drover-hub apply` to the container running on three agents (median of N);
- hub RSS idle (3 devices registered and online) and after the runs.

Usage (root): cargo build --release -p drover-agent -p drover-hub -p drover-tests --bins
              python3 bench/hub_figures.py [--runs 10] [--json bench/hub-figures.json]
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target/release")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def wait(pred, timeout=60.0, step=0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(step)
    raise TimeoutError("timed out")


def running(state, cid):
    try:
        with open(os.path.join(state + "-run", "containers", cid, "status.json")) as f:
            return json.load(f).get("state") == "running"
    except (OSError, ValueError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="drover-hubbench-")
    api, broker = free_port(), free_port()
    hub_cfg = os.path.join(work, "hub.toml")
    # The CLI finds the hub's admin token through its config (data_dir/api.token).
    env = dict(os.environ, DROVER_HUB_API=f"http://127.0.0.1:{api}", DROVER_HUB_CONFIG=hub_cfg)
    with open(hub_cfg, "w") as f:
        f.write(f'data_dir = "{work}/hub"\nlog_level = "warn"\n[api]\nlisten = "127.0.0.1:{api}"\n'
                f'[broker]\nlisten = "127.0.0.1:{broker}"\nadvertise = "127.0.0.1:{broker}"\n')
    image = os.path.join(work, "busybox")
    subprocess.run([f"{REL}/busybox-layout", image], check=True, stdout=subprocess.DEVNULL)
    procs, out, parent = [], {}, f"drover-hubbench-{os.getpid()}"
    hub = subprocess.Popen([f"{REL}/drover-hub", "serve", "--config", hub_cfg], stderr=subprocess.DEVNULL)
    procs.append(hub)
    try:
        wait(lambda: subprocess.run([f"{REL}/drover-hub", "get", "devices"], env=env, capture_output=True).returncode == 0)
        states = []
        for i in range(3):
            snippet = json.loads(subprocess.run([f"{REL}/drover-hub", "device", "add", f"b{i}", "--label", "bench=yes", "-o", "json"],
                                                env=env, check=True, capture_output=True).stdout)["config"]
            state = os.path.join(work, f"a{i}")
            cfg = os.path.join(work, f"a{i}.toml")
            with open(cfg, "w") as f:
                f.write(f'state_dir = "{state}"\nrun_dir = "{state}-run"\nmanifests_dir = ""\ncgroup_parent = "{parent}-{i}"\nlog_level = "warn"\n{snippet}\n')
            procs.append(subprocess.Popen([f"{REL}/drover-agent", "run", "--config", cfg], stderr=subprocess.DEVNULL))
            states.append(state)
        wait(lambda: all(d["online"] for d in json.loads(subprocess.run([f"{REL}/drover-hub", "get", "devices", "-o", "json"],
                                                                          env=env, capture_output=True).stdout)))
        time.sleep(2)
        out["hub_rss_idle_kib"] = rss_kib(hub.pid)
        manifest = os.path.join(work, "dep.yaml")
        lat = []
        for r in range(args.runs):
            with open(manifest, "w") as f:
                f.write("apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {name: bench}\nspec:\n"
                        "  selector: {matchLabels: {bench: \"yes\"}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n"
                        f"      containers:\n        - name: main\n          image: oci:{image}:latest\n"
                        f"          command: [/bin/sh, -c, \"echo {r}; while true; do sleep 1; done\"]\n")
            t0 = time.monotonic()
            subprocess.run([f"{REL}/drover-hub", "apply", "-f", manifest], env=env, check=True, stdout=subprocess.DEVNULL)
            wait(lambda: all(running(s, "bench.main") for s in states))
            lat.append((time.monotonic() - t0) * 1000)
            subprocess.run([f"{REL}/drover-hub", "delete", "-f", manifest], env=env, check=True, stdout=subprocess.DEVNULL)
            wait(lambda: all(not os.path.exists(os.path.join(s, "workloads", "bench.json")) for s in states), step=0.02)
        out["apply_to_running_on_3_agents_ms"] = {"median": round(statistics.median(lat), 1), "min": round(min(lat), 1),
                                                  "max": round(max(lat), 1), "runs": len(lat)}
        out["hub_rss_after_kib"] = rss_kib(hub.pid)
        out["hub_binary_bytes"] = os.path.getsize(f"{REL}/drover-hub")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            p.wait()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            for i in range(3):
                p = os.path.join("/sys/fs/cgroup", ctrl, f"{parent}-{i}")
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
