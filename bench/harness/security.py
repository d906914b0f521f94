#!/usr/bin/env python3
"""What issue 13's defences cost (release binaries, root only), each measured in one run:

1. container start latency, hardened (the default: seccomp profile, Docker's capability
   set, no_new_privileges, masked and read-only /proc and /sys paths) against
   `securityContext: {privileged: true}` (none of it), interleaved on one standalone agent
   (`[security] allow_privileged = true`): manifest renamed into the folder -> the
   container's first output line, as in agent.py;
2. agent memory connected to a hub over plain MQTT against MQTT over TLS (fleet CA pinned):
   one release hub with both listeners, two registered devices, two agents started
   together (one per transport), RSS / PSS / private from smaps_rollup once both are
   online and idle; repeated ROUNDS times with fresh agents.

Usage: python3 bench/harness/security.py --out FILE [--runs 30] [--rounds 3]
"""
import argparse, json, os, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent import Bench
from common import REL, dump, manifest, mem_sample, put, stats, wait


def privileged(name, image):
    """agent.py's manifest for `echo ready` with `securityContext: {privileged: true}`."""
    return manifest(name, image, "echo ready", restart="Never") + "      securityContext: {privileged: true}\n"


def latency(b, runs):
    """Hardened vs privileged start latency, alternating which goes first."""
    b.drover_once("warm")  # unpacks the image once; not counted
    wait(lambda: b.shim("warm").get("state") == "exited", timeout=10, what="warm-up exit")
    b.remove("warm")
    res = {"hardened": [], "privileged": []}
    for i in range(runs):
        order = ["hardened", "privileged"] if i % 2 == 0 else ["privileged", "hardened"]
        for kind in order:
            name = f"{kind[0]}{i}"
            t0 = time.monotonic()
            if kind == "hardened":
                put(b.mdir, name, manifest(name, b.image, "echo ready", restart="Never"))
            else:
                put(b.mdir, name, privileged(name, b.image))
            wait(lambda: b.printed_ready(name), timeout=30, what=f"{name} first output")
            res[kind].append((time.monotonic() - t0) * 1000)
            wait(lambda: b.shim(name).get("state") == "exited", timeout=10, what=f"{name} exit")
            b.remove(name)
    out = {k: stats(v) for k, v in res.items()}
    out["raw_ms"] = {k: [round(x, 2) for x in v] for k, v in res.items()}
    out["ratio_hardened_over_privileged"] = round(out["hardened"]["median"] / out["privileged"]["median"], 3)
    return out


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class TlsHub:
    """A release hub with plain and TLS listeners on loopback."""

    def __init__(self, work):
        self.work = work
        api, broker, api_tls, broker_tls = free_ports(4)
        self.api = f"http://127.0.0.1:{api}"
        self.plain_broker = f"127.0.0.1:{broker}"
        os.makedirs(work)
        self.cfg = os.path.join(work, "hub.toml")
        with open(self.cfg, "w") as f:
            f.write(f'data_dir = "{work}/data"\nlog_level = "warn"\n'
                    f'[api]\nlisten = "127.0.0.1:{api}"\ntls_listen = "127.0.0.1:{api_tls}"\n'
                    f'[broker]\nlisten = "127.0.0.1:{broker}"\ntls_listen = "127.0.0.1:{broker_tls}"\n'
                    f'advertise = "mqtts://127.0.0.1:{broker_tls}"\n')
        self.proc = subprocess.Popen([f"{REL}/drover-hub", "serve", "--config", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "hub.log"), "w"))
        wait(lambda: self.cli("get", "devices", check=False).returncode == 0, timeout=30, step=0.05, what="hub API")

    def cli(self, *args, check=True):
        r = subprocess.run([f"{REL}/drover-hub", "--api", self.api, *args], capture_output=True, text=True,
                           env=dict(os.environ, DROVER_HUB_CONFIG=self.cfg))
        if check and r.returncode != 0:
            raise RuntimeError(f"drover-hub {' '.join(args)}: {r.stderr.strip()}")
        return r

    def add(self, name):
        return json.loads(self.cli("device", "add", name, "-o", "json").stdout)["config"]

    def online(self, name):
        r = self.cli("get", "devices", "-o", "json", check=False)
        if r.returncode != 0:
            return False
        for d in json.loads(r.stdout):
            if d.get("name") == name:
                return bool(d.get("online"))
        return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def transport_memory(work, rounds):
    hub = TlsHub(os.path.join(work, "hub"))
    configs = {"tls": hub.add("sec-tls"), "plain": hub.add("sec-plain")}
    plain = configs["plain"].splitlines()
    configs["plain"] = "\n".join(f'broker = "{hub.plain_broker}"' if l.startswith("broker = ") else l for l in plain)
    if "mqtts://" not in configs["tls"]:
        raise RuntimeError("device add printed no mqtts:// broker: " + configs["tls"])
    res = {"tls": [], "plain": []}
    try:
        for r in range(rounds):
            agents = {}
            try:
                for kind in ("tls", "plain"):
                    b = Bench(tempfile.mkdtemp(prefix=f"drover-bench-sec-{kind}-"))
                    b.start_agent(extra_config="\n" + configs[kind] + "\n")
                    agents[kind] = b
                for kind in agents:
                    wait(lambda: hub.online(f"sec-{kind}"), timeout=30, step=0.2, what=f"sec-{kind} online")
                time.sleep(3)
                for kind, b in agents.items():
                    res[kind].append(b.agent_mem())
            finally:
                for b in agents.values():
                    b.cleanup()
    finally:
        hub.stop()
    out = {}
    for kind, samples in res.items():
        out[kind] = {f: stats([s[f] for s in samples], nd=2) for f in samples[0]}
    out["rounds"] = rounds
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("security.py: must run as root")
    work = tempfile.mkdtemp(prefix="drover-bench-sec-")
    out, ok = {"config": vars(args)}, False
    b = Bench(os.path.join(work, "standalone"))
    try:
        os.makedirs(b.work)
        b.start_agent(extra_config="[security]\nallow_privileged = true\n")
        out["start_latency"] = latency(b, args.runs)
        print("security.py: start latency done", file=sys.stderr)
        problems = b.cleanup()
        b = None
        if problems:
            raise RuntimeError("cleanup: " + "; ".join(problems))
        out["agent_memory_by_transport"] = transport_memory(os.path.join(work, "tls"), args.rounds)
        print("security.py: transport memory done", file=sys.stderr)
        ok = True
    finally:
        if b is not None:
            b.cleanup()
    dump(out, args.out)
    print(f"security.py: wrote {args.out}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
