#!/usr/bin/env python3
"""Agent memory, start latency (against crun and runc) and memory across desired-state updates.

One release `drover-agent` in standalone mode (private state folder, manifests folder and
cgroup parent), root only:

1. memory (RSS, PSS, private from /proc/PID/smaps_rollup; median of 5 samples) idle, with
   1 and with N sleeping busybox workloads (16 MiB limit), and each shim's private memory;
2. start latency: manifest renamed into the folder -> the container's first output line in
   <state>/logs/<wl>/main.log; in the same loop (order rotated each round) `crun run` and
   `runc run` on a bundle made of the agent's own config.json and a copy of its rootfs,
   time from spawn to the first line on the runtime's stdout;
3. U desired-state updates of one workload (`restartPolicy: Never`, command `true`, an env
   value alternating a/b): each waits until the workload record holds the new spec and the
   shim's status.json shows a new container that exited; agent memory sampled along the way
   and again after, with the shims of the N sleepers;
4. the hub path (unless --hub-runs 0): a release `drover-hub serve` on loopback ports and a
   second agent connected to it as a registered device; time from `drover-hub apply` of a
   Deployment selecting that device (CLI process included) to the container's first output
   line, with the apply CLI's own time reported apart.

Usage: python3 bench/harness/agent.py --out FILE [--runs 30] [--workloads 10] [--updates 1000]
                                     [--hub-runs RUNS]
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (REL, dump, kill_cgroup_procs, manifest, mem_sample, put, read_json, remove_cgroups,
                    rollup, stats, status_kib, umount_under, wait)

SLEEP = "while true; do sleep 1; done"


class Bench:
    def __init__(self, work):
        self.work = work
        self.state = os.path.join(work, "state")
        self.run = os.path.join(work, "run")  # the agent's run_dir: shim folders, libcontainer state
        self.mdir = os.path.join(work, "manifests")
        self.image = os.path.join(work, "busybox")
        self.parent = f"drover-bench-{os.getpid()}"
        self.rt_ids = []
        self.agent = None

    def start_agent(self, extra_config=""):
        os.makedirs(self.mdir)
        subprocess.run([f"{REL}/busybox-layout", self.image], check=True, stdout=subprocess.DEVNULL)
        cfg = os.path.join(self.work, "agent.toml")
        with open(cfg, "w") as f:
            f.write(f'state_dir = "{self.state}"\nrun_dir = "{self.run}"\nmanifests_dir = "{self.mdir}"\n'
                    f'cgroup_parent = "{self.parent}/agent"\nlog_level = "warn"\n{extra_config}')
        self.agent = subprocess.Popen([f"{REL}/drover-agent", "run", "--config", cfg],
                                      stderr=open(os.path.join(self.work, "agent.log"), "w"))
        wait(lambda: os.path.exists(os.path.join(self.run, "status.json")), timeout=20, step=0.05,
             what="agent status.json")
        if self.agent.poll() is not None:
            raise RuntimeError("agent exited: " + open(os.path.join(self.work, "agent.log")).read())

    def shim(self, wl):
        return read_json(os.path.join(self.run, "containers", f"{wl}.main", "status.json")) or {}

    def record(self, wl):
        return read_json(os.path.join(self.state, "workloads", f"{wl}.json"))

    def remove(self, wl, timeout=30):
        os.remove(os.path.join(self.mdir, f"{wl}.yaml"))
        wait(lambda: self.record(wl) is None and not os.path.exists(os.path.join(self.state, "containers", f"{wl}.main")),
             timeout=timeout, step=0.005, what=f"{wl} removed")

    def agent_mem(self):
        if self.agent.poll() is not None:
            raise RuntimeError("agent died")
        return mem_sample(self.agent.pid)

    # ---- start latency -------------------------------------------------------------
    def printed_ready(self, name):
        """True once workload `name`'s container has written `ready` to its log."""
        try:
            with open(os.path.join(self.state, "logs", name, "main.log")) as f:
                return "ready" in f.read()
        except OSError:
            return False

    def drover_once(self, name):
        t0 = time.monotonic()
        put(self.mdir, name, manifest(name, self.image, "echo ready", restart="Never"))
        wait(lambda: self.printed_ready(name), timeout=30, what=f"{name} first output")
        return (time.monotonic() - t0) * 1000

    def make_bundle(self, name):
        """A bundle for crun/runc: the agent's own config.json for `name`, its rootfs copied."""
        src = os.path.join(self.run, "containers", f"{name}.main", "bundle")
        rootfs = os.path.join(self.state, "containers", f"{name}.main", "bundle", "rootfs")
        self.bundle = os.path.join(self.work, "bundle")
        os.makedirs(self.bundle)
        subprocess.run(["cp", "-a", rootfs, os.path.join(self.bundle, "rootfs")], check=True)
        with open(os.path.join(src, "config.json")) as f:
            self.spec = json.load(f)
        self.spec["root"]["path"] = "rootfs"
        # The agent's /etc/hosts, hostname and resolv.conf: copied, so the bundle outlives
        # the workload; crun and runc bind-mount them as the agent's container does.
        etc = os.path.join(self.bundle, "etc")
        os.makedirs(etc)
        for m in self.spec.get("mounts", []):
            if m.get("type") == "bind" and m["source"].startswith(os.path.join(self.run, "containers")):
                copy = os.path.join(etc, os.path.basename(m["source"]))
                shutil.copyfile(m["source"], copy)
                m["source"] = copy

    def runtime_once(self, rt, i):
        cid = f"{self.parent}-{rt}-{i}"
        self.rt_ids.append((rt, cid))
        spec = dict(self.spec)
        spec["linux"] = dict(spec["linux"], cgroupsPath=f"/{self.parent}/{rt}/c{i}")
        spec["hostname"] = "bench"
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        if rt == "crun":
            # crun refuses hybrid cgroup hosts: hide the v2 mount in a private mount namespace.
            cmd = ["unshare", "-m", "sh", "-c",
                   f"umount /sys/fs/cgroup/unified && exec crun run -b {self.bundle} {cid}"]
        else:
            cmd = ["runc", "run", "-b", self.bundle, cid]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = p.stdout.readline()
        dt = (time.monotonic() - t0) * 1000
        _, err = p.communicate(timeout=30)
        if b"ready" not in line or p.returncode != 0:
            raise RuntimeError(f"{rt} run failed (rc {p.returncode}): {line!r} {err.decode(errors='replace')}")
        return dt

    def wrapper_once(self):
        t0 = time.monotonic()
        subprocess.run(["unshare", "-m", "sh", "-c", "umount /sys/fs/cgroup/unified && exec true"], check=True)
        return (time.monotonic() - t0) * 1000

    def latency(self, runs):
        name = "lat-warm"
        self.drover_once(name)  # unpacks the image once; not counted
        wait(lambda: self.shim(name).get("state") == "exited", timeout=10, what="warm-up exit")
        self.make_bundle(name)
        self.remove(name)
        self.runtime_once("crun", "warm")
        self.runtime_once("runc", "warm")
        res = {"drover": [], "crun": [], "runc": []}
        order = ["drover", "crun", "runc"]
        for i in range(runs):
            for rt in order[i % 3:] + order[:i % 3]:
                if rt == "drover":
                    name = f"lat{i}"
                    res[rt].append(self.drover_once(name))
                    wait(lambda: self.shim(name).get("state") == "exited", timeout=10, what=f"{name} exit")
                    self.remove(name)
                else:
                    res[rt].append(self.runtime_once(rt, i))
        wrap = [self.wrapper_once() for _ in range(max(5, runs // 2))]
        out = {rt: stats(v) for rt, v in res.items()}
        out["raw_ms"] = {rt: [round(x, 2) for x in v] for rt, v in res.items()}
        out["crun_wrapper_ms"] = stats(wrap)
        d = out["drover"]["median"]
        out["ratio_drover_over_crun"] = round(d / out["crun"]["median"], 2)
        out["ratio_drover_over_runc"] = round(d / out["runc"]["median"], 2)
        out["ratio_drover_over_crun_without_wrapper"] = round(
            d / max(0.1, out["crun"]["median"] - out["crun_wrapper_ms"]["median"]), 2)
        return out

    # ---- hub path -------------------------------------------------------------------
    def start_hub(self):
        """A release hub on free loopback ports; this bench's agent is registered as `bench`."""
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.api = f"http://127.0.0.1:{ports[0]}"
        hub_dir = os.path.join(self.work, "hub")
        os.makedirs(hub_dir)
        cfg = os.path.join(hub_dir, "hub.toml")
        with open(cfg, "w") as f:
            f.write(f'data_dir = "{hub_dir}/data"\nlog_level = "warn"\n[api]\nlisten = "127.0.0.1:{ports[0]}"\n'
                    f'[broker]\nlisten = "127.0.0.1:{ports[1]}"\nadvertise = "127.0.0.1:{ports[1]}"\n')
        self.hub_cfg = cfg  # the CLI finds the admin token through it (DROVER_HUB_CONFIG)
        self.hub = subprocess.Popen([f"{REL}/drover-hub", "serve", "--config", cfg], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(hub_dir, "hub.log"), "w"))
        wait(lambda: self.hub_cli("get", "devices", check=False).returncode == 0, timeout=30, step=0.05,
             what="hub API")
        out = self.hub_cli("device", "add", "bench", "--label", "bench=yes", "-o", "json").stdout
        return json.loads(out)["config"]

    def hub_cli(self, *args, check=True):
        r = subprocess.run([f"{REL}/drover-hub", "--api", self.api, *args], capture_output=True, text=True,
                           env=dict(os.environ, DROVER_HUB_CONFIG=self.hub_cfg))
        if check and r.returncode != 0:
            raise RuntimeError(f"drover-hub {' '.join(args)}: {r.stderr.strip()}")
        return r

    def hub_once(self, name):
        """`drover-hub apply` of a Deployment for this device -> first output; (total, apply CLI) ms."""
        path = os.path.join(self.work, "hub", f"{name}.yaml")
        with open(path, "w") as f:
            f.write(f"apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n"
                    f"  selector: {{matchLabels: {{bench: 'yes'}}}}\n  template:\n    spec:\n      stopGracePeriod: 1s\n"
                    f"      restartPolicy: Never\n      containers:\n        - name: main\n"
                    f"          image: oci:{self.image}:latest\n          command: [/bin/sh, -c, echo ready]\n"
                    f"          resources: {{memory: 16Mi}}\n")
        t0 = time.monotonic()
        self.hub_cli("apply", "-f", path)
        cli = (time.monotonic() - t0) * 1000
        wait(lambda: self.printed_ready(name), timeout=30, what=f"{name} first output (hub)")
        total = (time.monotonic() - t0) * 1000
        wait(lambda: self.shim(name).get("state") == "exited", timeout=10, what=f"{name} exit")
        self.hub_cli("delete", "-f", path)
        wait(lambda: self.record(name) is None and not os.path.exists(os.path.join(self.state, "containers", f"{name}.main")),
             timeout=30, step=0.005, what=f"{name} removed (hub)")
        return total, cli

    def hub_latency(self, runs):
        self.hub_once("hub-warm")
        total, cli = [], []
        for i in range(runs):
            t, c = self.hub_once(f"hlat{i}")
            total.append(t)
            cli.append(c)
        return {"hub_apply_to_first_output": stats(total), "apply_cli_ms": stats(cli),
                "raw_ms": [round(x, 2) for x in total]}

    # ---- memory ---------------------------------------------------------------------
    def start_sleepers(self, names):
        for n in names:
            put(self.mdir, n, manifest(n, self.image, SLEEP))
        wait(lambda: all(self.shim(n).get("state") == "running" for n in names), timeout=60, step=0.02,
             what="sleepers running")

    def shim_mem(self, names):
        per = [rollup(self.shim(n)["shim_pid"]) for n in names]
        return {k: stats([p[k] for p in per], 0) for k in ("private_kib", "rss_kib", "pss_kib")}

    def updates(self, count, sleepers):
        wl = "upd"
        vals = ["a", "b"]
        put(self.mdir, wl, manifest(wl, self.image, "true", restart="Never", env={"V": vals[1]}))
        wait(lambda: self.shim(wl).get("state") == "exited", timeout=30, what="upd first run")
        time.sleep(2)
        before = self.agent_mem()
        curve, lat = [[0, before["rss_kib"], before["pss_kib"]]], []
        every = max(1, count // 25)
        for i in range(count):
            v = vals[i % 2]
            prev = self.shim(wl)
            prev_key = (prev.get("pid"), prev.get("started_at_ms"))

            def done():
                rec = self.record(wl)
                if not rec:
                    return False
                env = rec["spec"]["containers"][0]["env"]
                if env != [{"name": "V", "value": v}]:
                    return False
                st = self.shim(wl)
                return st.get("state") == "exited" and (st.get("pid"), st.get("started_at_ms")) != prev_key
            t0 = time.monotonic()
            put(self.mdir, wl, manifest(wl, self.image, "true", restart="Never", env={"V": v}))
            wait(done, timeout=30, step=0.002, what=f"update {i + 1}")
            lat.append((time.monotonic() - t0) * 1000)
            if (i + 1) % every == 0 or i + 1 == count:
                r = rollup(self.agent.pid)
                curve.append([i + 1, r["rss_kib"], r["pss_kib"]])
        time.sleep(2)
        after = self.agent_mem()
        return {"count": count, "signal": "workload record holds the new env value and the shim's status.json "
                                          "shows a new container (pid/started_at_ms) that exited",
                "update_to_exited_ms": stats(lat), "agent_before": before, "agent_after": after,
                "agent_rss_growth_kib": after["rss_kib"] - before["rss_kib"],
                "agent_pss_growth_kib": after["pss_kib"] - before["pss_kib"],
                "shims_after": self.shim_mem(sleepers), "curve_kib": curve}

    # ---- cleanup --------------------------------------------------------------------
    def cleanup(self):
        problems = []
        if self.agent and self.agent.poll() is None:
            try:
                for f in os.listdir(self.mdir):
                    os.remove(os.path.join(self.mdir, f))
                wait(lambda: not os.listdir(os.path.join(self.state, "workloads")), timeout=30, step=0.05,
                     what="workloads removed")
            except Exception as e:  # noqa: BLE001 - keep cleaning
                problems.append(f"graceful removal: {e}")
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        if getattr(self, "hub", None) and self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait()
        # Anything left behind: shims, containers, runtime state, mounts, cgroups.
        for d in (os.listdir(os.path.join(self.run, "containers")) if os.path.isdir(os.path.join(self.run, "containers")) else []):
            st = read_json(os.path.join(self.run, "containers", d, "status.json")) or {}
            pid = st.get("shim_pid")
            if pid and st.get("state") in ("starting", "running"):
                try:
                    if b"drover-agent" in open(f"/proc/{pid}/cmdline", "rb").read():
                        os.kill(pid, signal.SIGKILL)
                        problems.append(f"killed leftover shim {pid}")
                except OSError:
                    pass
        for rt, cid in self.rt_ids:
            subprocess.run([rt, "delete", "-f", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kill_cgroup_procs(self.parent):
            problems.append("killed processes left in bench cgroups")
            time.sleep(0.3)
        if umount_under(self.work):
            problems.append("unmounted leftover mounts")
        left = remove_cgroups(self.parent)
        if left:
            problems.append(f"cgroups left: {left}")
        shutil.rmtree(self.work, ignore_errors=True)
        return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--workloads", type=int, default=10)
    ap.add_argument("--updates", type=int, default=1000)
    ap.add_argument("--hub-runs", type=int, default=None, help="runs of the hub path (default: --runs; 0: skip)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("agent.py: must run as root")
    b = Bench(tempfile.mkdtemp(prefix="drover-bench-"))
    out, ok = {"config": vars(args)}, False
    try:
        t = time.monotonic()
        b.start_agent()
        time.sleep(3)
        mem = {"agent_idle": b.agent_mem()}
        out["start_latency"] = b.latency(args.runs)
        print(f"agent.py: latency done ({time.monotonic() - t:.0f}s)", file=sys.stderr)
        sleepers = [f"w{i}" for i in range(args.workloads)]
        b.start_sleepers(sleepers[:1])
        time.sleep(2)
        mem["agent_1_workload"] = b.agent_mem()
        mem["shim_1_workload"] = b.shim_mem(sleepers[:1])
        b.start_sleepers(sleepers)
        time.sleep(2)
        mem["workloads"] = args.workloads
        mem["agent_n_workloads"] = b.agent_mem()
        mem["shim_n_workloads"] = b.shim_mem(sleepers)
        out["agent_memory"] = mem
        print(f"agent.py: memory done ({time.monotonic() - t:.0f}s)", file=sys.stderr)
        out["updates"] = b.updates(args.updates, sleepers)
        print(f"agent.py: updates done ({time.monotonic() - t:.0f}s)", file=sys.stderr)
        for f in os.listdir(b.mdir):
            os.remove(os.path.join(b.mdir, f))
        wait(lambda: not os.listdir(os.path.join(b.state, "workloads")), timeout=60, step=0.05, what="all removed")
        time.sleep(2)
        mem["agent_idle_after_all"] = b.agent_mem()
        hub_runs = args.runs if args.hub_runs is None else args.hub_runs
        if hub_runs:
            problems = b.cleanup()
            if problems:
                print("agent.py: cleanup before the hub run: " + "; ".join(problems), file=sys.stderr)
            b = Bench(tempfile.mkdtemp(prefix="drover-bench-hub-"))
            os.makedirs(b.work, exist_ok=True)
            snippet = b.start_hub()
            b.start_agent(extra_config="\n" + snippet + "\n")
            out["hub_path"] = b.hub_latency(hub_runs)
            out["hub_path"]["ratio_over_crun"] = round(
                out["hub_path"]["hub_apply_to_first_output"]["median"] / out["start_latency"]["crun"]["median"], 2)
            print(f"agent.py: hub path done ({time.monotonic() - t:.0f}s)", file=sys.stderr)
        out["agent_binary_bytes"] = os.path.getsize(f"{REL}/drover-agent")
        out["host"] = {"kernel": os.uname().release, "cpus": os.cpu_count(),
                       "crun": subprocess.run(["crun", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
                       "runc": subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]}
        ok = True
    finally:
        problems = b.cleanup()
        out["cleanup"] = problems
        if problems:
            print("agent.py: cleanup: " + "; ".join(problems), file=sys.stderr)
    dump(out, args.out)
    print(f"agent.py: wrote {args.out}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
