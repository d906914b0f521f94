"""The processes of the hub fan-out benchmark (bench/fanout.py): a release `drover-hub`,
Mosquitto, and the simulated fleet (`drover-loadgen fleet`, driven by JSON lines on its
stdin). Starts, stops and talks to them, reads their CPU time and RSS from /proc; it never
judges a figure. Python 3 stdlib only."""
import json, os, signal, socket, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target/release")
HUB, LOADGEN = os.path.join(REL, "drover-hub"), os.path.join(REL, "drover-loadgen")
USER_HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / USER_HZ


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop(p, timeout=30):
    """SIGTERM, then SIGKILL after `timeout` s; seconds it took to exit."""
    if p is None or p.poll() is not None:
        return 0.0
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return time.monotonic() - t


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip() for l in f.readlines()[-n:]]
    except OSError:
        return []


class Mosquitto:
    def __init__(self, work, port, nodelay=False):
        cfg = os.path.join(work, "mosquitto.conf")
        with open(cfg, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                    "max_queued_messages 20000\npersistence false\nlog_type error\nlog_type warning\n"
                    + ("set_tcp_nodelay true\n" if nodelay else ""))
        self.log = os.path.join(work, "mosquitto.log")
        self.proc = subprocess.Popen(["mosquitto", "-c", cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"))
        wait_port(port)
        self.version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        stop(self.proc)


class Hub:
    """One hub data folder and config; `broker_url` set means an external broker;
    `broker_host`: the address the embedded broker listens on and gives devices."""

    def __init__(self, work, tag, n, bport, broker_url=None, log_level="warn", broker_host="127.0.0.1"):
        self.api = free_port()
        self.data = os.path.join(work, f"hub-{tag}")
        self.cfg = os.path.join(work, f"hub-{tag}.toml")
        self.log = os.path.join(work, f"hub-{tag}.log")
        self.proc = None
        with open(self.cfg, "w") as f:
            # Plain MQTT and HTTP, as the figures before TLS existed were taken (no TLS
            # listeners, so several hubs never compete for 7443/8883); a broker on another
            # address than loopback (agent-telemetry's veth) needs allow_plain.
            f.write(f'data_dir = "{self.data}"\nlog_level = "{log_level}"\n[api]\nlisten = "127.0.0.1:{self.api}"\n'
                    f'advertise = "127.0.0.1:{self.api}"\ntls_listen = ""\n[broker]\nlisten = "{broker_host}:{bport}"\n'
                    f'advertise = "{broker_host}:{bport}"\nmax_connections = {2 * n + 100}\ntls_listen = ""\n'
                    f'allow_plain = true\n')
            if broker_url:
                f.write(f'url = "{broker_url}"\n')

    @property
    def addr(self):
        return f"127.0.0.1:{self.api}"

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        """Spawns `serve`; the Unix time just before the spawn."""
        t = time.time()
        self.proc = subprocess.Popen([HUB, "serve", "--config", self.cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "a"))
        return t

    @property
    def token(self):
        """The hub's admin token (created at its first start), or None before."""
        try:
            with open(os.path.join(self.data, "api.token")) as f:
                return f.read().strip()
        except OSError:
            return None

    def env(self):
        """The environment for the CLI and drover-loadgen: the admin token in DROVER_HUB_TOKEN."""
        return dict(os.environ, DROVER_HUB_TOKEN=self.token or "", DROVER_HUB_CONFIG=self.cfg)

    def request(self, path):
        return urllib.request.Request(f"http://{self.addr}{path}",
                                      headers={"Authorization": f"Bearer {self.token}"})

    def wait_healthy(self, timeout=120.0):
        """Polls /v1/healthz every 5 ms; the Unix time of the first 200."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.proc.returncode}: {tail(self.log, 5)}")
            try:
                with urllib.request.urlopen(self.request("/v1/healthz"), timeout=2) as r:
                    if r.status == 200:
                        return time.time()
            except OSError:
                pass
            time.sleep(0.005)
        raise TimeoutError(f"the hub's API did not answer within {timeout} s")

    def stop(self):
        return stop(self.proc)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def get(self, path):
        with urllib.request.urlopen(self.request(path), timeout=30) as r:
            return json.load(r)

    def cli(self, *args, timeout=600):
        return subprocess.run([HUB, *args, "--api", f"http://{self.addr}"], capture_output=True,
                              text=True, timeout=timeout, env=self.env())

    def log_warnings(self):
        errs = [l for l in tail(self.log, 2000) if " ERROR " in l or " WARN " in l]
        return len(errs), errs[-3:]


class Fleet:
    """`drover-loadgen fleet`: one JSON command per line, one JSON answer per line."""

    def __init__(self, work, creds, hub, broker_addr, extra=()):
        self.log = os.path.join(work, "loadgen.log")
        self.proc = subprocess.Popen(
            [LOADGEN, "fleet", "--api", hub.addr, "--broker", broker_addr, "--creds", creds, "--hub-bin", HUB,
             *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "a"), text=True, bufsize=1,
            env=hub.env())

    def cmd(self, cmd, **kw):
        self.proc.stdin.write(json.dumps(dict(kw, cmd=cmd)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"drover-loadgen fleet exited ({self.proc.poll()}): {tail(self.log, 5)}")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def record_failure(out, err, fleet=None):
    """Records `err` in a result row (ok false, failure text, the loadgen log's tail) and
    says it on stderr: a failure is recorded, never hidden."""
    out["ok"], out["failure"] = False, f"{type(err).__name__}: {err}"
    print(f"  FAILED: {out['failure']}", file=sys.stderr, flush=True)
    if fleet:
        out["loadgen_log_tail"] = tail(fleet.log)


def teardown(out, fleet=None, hub=None, mosq=None):
    """Stops the fleet, the hub and the broker (each may be None) and records the hub's
    log warnings in `out`, with the log's tail (also on stderr) when the row failed."""
    if fleet:
        fleet.close()
    if hub:
        hub.stop()
    if mosq:
        mosq.stop()
    if not hub:
        return
    out["hub_log_warnings"], sample = hub.log_warnings()
    if sample:
        out["hub_log_sample"] = sample
    if not out.get("ok"):
        out["hub_log_tail"] = tail(hub.log)
        for line in out["hub_log_tail"]:
            print(f"    hub: {line}", file=sys.stderr, flush=True)
