"""The processes of the agent telemetry bench (bench/agent_telemetry.py): release
`drover-agent`s registered with a hub (optionally inside a network namespace behind a veth
pair), their shims, the namespace itself, and a tcpdump capture split by MQTT packet type.
Starts, stops, reads /proc and byte counters; it never judges a figure. Python 3 stdlib only."""
import json, os, shutil, signal, struct, subprocess, threading, time

from common import REL, kill_cgroup_procs, read_json, remove_cgroups, umount_under, wait
from fanout_procs import cpu_s, stop, tail

AGENT = os.path.join(REL, "drover-agent")


class Agent:
    """One agent with its own state, run folder and cgroup parent, registered as device
    `key` with label set=`label`; `interval` None leaves `[telemetry]` at its defaults."""

    def __init__(self, work, hub, key, label, interval, parent, netns=None):
        self.key, self.dir = key, os.path.join(work, key)
        self.state, self.run = os.path.join(self.dir, "state"), os.path.join(self.dir, "run")
        self.log, self.names = os.path.join(self.dir, "agent.log"), []
        os.makedirs(self.dir)
        r = hub.cli("device", "add", key, "--label", f"set={label}", "-o", "json")
        if r.returncode != 0:
            raise RuntimeError(f"device add {key}: {r.stderr.strip()[-300:]}")
        snippet = json.loads(r.stdout)["config"]
        cfg = os.path.join(self.dir, "agent.toml")
        with open(cfg, "w") as f:
            f.write(f'state_dir = "{self.state}"\nrun_dir = "{self.run}"\nmanifests_dir = ""\n'
                    f'cgroup_parent = "{parent}/{key}"\nlog_level = "warn"\n{snippet}\n'
                    + ("" if interval is None else f'[telemetry]\ninterval = "{interval}"\n'))
        cmd = [AGENT, "run", "--config", cfg]
        if netns:  # the network namespace only: mounts and cgroups stay the host's
            cmd = ["nsenter", f"--net=/run/netns/{netns.name}", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"))

    @property
    def pid(self):
        return self.proc.pid

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent {self.key} exited with {self.proc.returncode}: {tail(self.log, 5)}")

    def shim(self, name):
        return read_json(os.path.join(self.run, "containers", f"{name}.main", "status.json")) or {}

    def wait_running(self, names, timeout=120):
        self.names = names

        def running():
            self.check_alive()
            return all(self.shim(n).get("state") == "running" for n in names)
        wait(running, timeout=timeout, step=0.2, what=f"{self.key}: {len(names)} workloads running")

    def shims_cpu_s(self):
        total = 0.0
        for n in self.names:
            try:
                total += cpu_s(self.shim(n)["shim_pid"])
            except (OSError, KeyError):
                pass
        return total

    def workloads_left(self):
        d = os.path.join(self.state, "workloads")
        return os.listdir(d) if os.path.isdir(d) else []


class Netns:
    """A network namespace joined to the root one by a veth pair (IPv6 off on both ends, so
    that only the agent's own traffic crosses it)."""

    def __init__(self, subnet="10.213.77"):
        tag = os.getpid() % 100000
        self.name, self.host_if, self.agent_if = f"drover-tb-{tag}", f"dtb{tag}h", f"dtb{tag}a"
        self.host_ip, self.agent_ip = f"{subnet}.1", f"{subnet}.2"
        if subnet + "." in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout:
            raise RuntimeError(f"{subnet}.0/30 is already in use on this host")
        self.cap = None  # tcpdump on host_if, stopped by delete()
        try:
            self.setup()
        except (OSError, subprocess.CalledProcessError):
            self.delete()
            raise

    def setup(self):
        for c in (f"netns add {self.name}", f"link add {self.host_if} type veth peer name {self.agent_if}",
                  f"link set {self.agent_if} netns {self.name}", f"addr add {self.host_ip}/30 dev {self.host_if}",
                  f"-n {self.name} addr add {self.agent_ip}/30 dev {self.agent_if}"):
            subprocess.run(["ip", *c.split()], check=True)
        self.sysctl(f"net/ipv6/conf/{self.host_if}/disable_ipv6", "1")
        self.sysctl(f"net/ipv6/conf/{self.agent_if}/disable_ipv6", "1", inside=True)
        for c in (f"link set {self.host_if} up", f"-n {self.name} link set {self.agent_if} up",
                  f"-n {self.name} link set lo up"):
            subprocess.run(["ip", *c.split()], check=True)

    def sysctl(self, key, value, inside=False):
        pre = ["nsenter", f"--net=/run/netns/{self.name}", "--"] if inside else []
        subprocess.run(pre + ["sh", "-c", f"echo {value} > /proc/sys/{key}"], check=True)

    def counters(self):
        """The agent side's byte and packet counters, read inside the namespace."""
        files = " ".join(f"/sys/class/net/{self.agent_if}/statistics/{k}"
                         for k in ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets"))
        r = subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", f"cat {files}"],
                           capture_output=True, text=True, check=True)
        return dict(zip(("tx_bytes", "rx_bytes", "tx_packets", "rx_packets"), map(int, r.stdout.split())))

    def delete(self):
        if self.cap and self.cap.poll() is None:
            self.cap.kill()
            self.cap.wait()
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", self.host_if], stderr=subprocess.DEVNULL)


class CounterSampler(threading.Thread):
    """Reads a namespace's counters every `period` s from its start until stopped:
    [(seconds since start, counters)], the first at 0."""

    def __init__(self, ns, period):
        super().__init__(daemon=True)
        self.ns, self.period, self.samples, self.done = ns, period, [], threading.Event()

    def run(self):
        t0, k = time.monotonic(), 0
        self.samples.append((0.0, self.ns.counters()))
        while True:
            k += 1
            if self.done.wait(max(0.0, t0 + k * self.period - time.monotonic())):
                return
            self.samples.append((time.monotonic() - t0, self.ns.counters()))

    def stop(self):
        self.done.set()
        self.join()


def capture(iface, path):
    """tcpdump on `iface` into `path` (headers only; frame lengths are kept), or None."""
    if not shutil.which("tcpdump"):
        return None
    p = subprocess.Popen(["tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-s", "200", "-w", path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return p


MQTT_TYPES = {3: "PUBLISH", 4: "PUBACK", 8: "SUBSCRIBE", 9: "SUBACK", 12: "PINGREQ", 13: "PINGRESP"}


def pcap_frames(path):
    """(unix time, frame bytes on the wire, captured bytes) of each frame in a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    end = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    scale = 1e-9 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(end + "IIII", data[off:off + 16])
        yield sec + frac * scale, orig, data[off + 16:off + 16 + incl]
        off += 16 + incl


def classify(frame):
    """What an Ethernet frame carries: ARP, a pure TCP ACK, or the (first) MQTT packet type,
    PUBLISHes by the last part of their topic; and its source IPv4 address."""
    if frame[12:14] == b"\x08\x06":
        return "ARP", ".".join(map(str, frame[28:32]))  # the sender's address
    if frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return "other", None
    ihl, src = (frame[14] & 15) * 4, ".".join(map(str, frame[26:30]))
    total = struct.unpack(">H", frame[16:18])[0]
    tcp = 14 + ihl
    doff = (frame[tcp + 12] >> 4) * 4
    flags = frame[tcp + 13]
    if total - ihl - doff == 0:
        return ("TCP SYN/FIN" if flags & 3 else "TCP ACK (no payload)"), src
    pay = frame[tcp + doff:]
    kind = MQTT_TYPES.get(pay[0] >> 4, f"MQTT type {pay[0] >> 4}") if pay else "TCP payload"
    if kind == "PUBLISH":
        i = 1
        while i < len(pay) and pay[i] & 0x80:
            i += 1
        tlen = struct.unpack(">H", pay[i + 1:i + 3])[0] if len(pay) >= i + 3 else 0
        topic = pay[i + 3:i + 3 + tlen].decode(errors="replace")
        kind = f"PUBLISH {topic.rsplit('/', 1)[-1] if topic else '?'}"
    return kind, src


def pcap_breakdown(path, agent_ip, t0, t1):
    """Frames and bytes per direction and kind between t0 and t1 (Unix time)."""
    rows = {}
    for ts, orig, frame in pcap_frames(path):
        if not t0 <= ts <= t1:
            continue
        kind, src = classify(frame)
        key = ("up" if src == agent_ip else "down", kind)
        r = rows.setdefault(key, {"direction": key[0], "kind": kind, "frames": 0, "bytes": 0})
        r["frames"] += 1
        r["bytes"] += orig
    for r in rows.values():
        r["kbit_s"] = round(r["bytes"] * 8 / (t1 - t0) / 1000, 4)
    return sorted(rows.values(), key=lambda r: (r["direction"] != "up", -r["bytes"]))


def cleanup(hub, agents, ns, work, parent, manifests):
    """Deletes the Deployments (agents remove their containers), stops agents and hub, then
    removes whatever is left: shims, cgroups, mounts, the namespace. Returns the problems."""
    problems = []
    if hub and hub.alive():
        for path in manifests:
            r = hub.cli("delete", "-f", path)
            if r.returncode != 0:
                problems.append(f"delete {path}: {r.stderr.strip()[-200:]}")
    for a in agents:
        try:
            if a.proc.poll() is None:
                wait(lambda: not a.workloads_left(), timeout=60, step=0.2, what=f"{a.key}: workloads removed")
        except TimeoutError as e:
            problems.append(str(e))
        stop(a.proc, 15)
        for n in a.names:
            pid = a.shim(n).get("shim_pid")
            try:
                if pid and b"drover-agent" in open(f"/proc/{pid}/cmdline", "rb").read():
                    os.kill(pid, signal.SIGKILL)
                    problems.append(f"killed leftover shim {pid}")
            except OSError:
                pass
    if hub:
        hub.stop()
    if kill_cgroup_procs(parent):
        problems.append("killed processes left in bench cgroups")
        time.sleep(0.3)
    if umount_under(work):
        problems.append("unmounted leftover mounts")
    left = remove_cgroups(parent)
    if left:
        problems.append(f"cgroups left: {left}")
    if ns:
        ns.delete()
    return problems
