"""Helpers shared by the harness scripts (Python 3 stdlib only)."""
import json, os, signal, statistics, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target/release")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rollup(pid):
    """Rss, Pss and private (Private_Clean + Private_Dirty) in KiB from smaps_rollup."""
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                vals[parts[0][:-1]] = int(parts[1])
    return {"rss_kib": vals.get("Rss", 0), "pss_kib": vals.get("Pss", 0),
            "private_kib": vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0)}


def mem_sample(pid, n=5, gap=0.2):
    """Median of n smaps_rollup samples (memory moves a little while the agent resyncs)."""
    samples = []
    for i in range(n):
        samples.append(rollup(pid))
        if i + 1 < n:
            time.sleep(gap)
    return {k: int(statistics.median(s[k] for s in samples)) for k in samples[0]}


def stats(xs, nd=1):
    return {"median": round(statistics.median(xs), nd), "min": round(min(xs), nd),
            "max": round(max(xs), nd), "runs": len(xs)}


def wait(pred, timeout=30.0, step=0.001, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def put(d, name, text):
    """Atomically places NAME.yaml in folder d (write a dot file, rename)."""
    tmp = os.path.join(d, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, f"{name}.yaml"))


def manifest(name, image, script, restart=None, env=None, memory="16Mi"):
    lines = ["apiVersion: drover.dev/v1", "kind: Workload", f"metadata: {{name: {name}}}", "spec:",
             "  stopGracePeriod: 1s"]
    if restart:
        lines.append(f"  restartPolicy: {restart}")
    lines += ["  containers:", "    - name: main", f"      image: oci:{image}:latest",
              f"      command: [/bin/sh, -c, {json.dumps(script)}]", f"      resources: {{memory: {memory}}}"]
    if env:
        lines.append("      env: [" + ", ".join(f"{{name: {k}, value: {json.dumps(v)}}}" for k, v in env.items()) + "]")
    return "\n".join(lines) + "\n"


def cgroup_dirs(parent):
    out = []
    for ctrl in sorted(os.listdir("/sys/fs/cgroup")):
        p = os.path.join("/sys/fs/cgroup", ctrl, parent.strip("/"))
        if os.path.isdir(p):
            out.append(p)
    return out


def kill_cgroup_procs(parent):
    """SIGKILLs every process left in any cgroup under parent (all hierarchies)."""
    killed = 0
    for top in cgroup_dirs(parent):
        for d, _, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    pids = open(os.path.join(d, "cgroup.procs")).read().split()
                except OSError:
                    continue
                for p in pids:
                    try:
                        os.kill(int(p), signal.SIGKILL)
                        killed += 1
                    except (OSError, ValueError):
                        pass
    return killed


def remove_cgroups(parent, tries=20):
    """Removes parent and everything under it in every hierarchy; returns what is left."""
    for _ in range(tries):
        left = []
        for top in cgroup_dirs(parent):
            for d, _, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(d)
                except OSError:
                    left.append(d)
        if not left:
            return []
        time.sleep(0.1)
    return left


def umount_under(path):
    """Lazily unmounts every mount point below path (deepest first)."""
    path = os.path.realpath(path)
    mps = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                mps.append(mp)
    for mp in sorted(mps, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
    return len(mps)


def dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def splice_section(report, title, body):
    """Replaces the section of REPORT.md that starts with `title` (up to the next "## ")
    by `body`; without one, puts `body` before "## Left out", else at the end."""
    text = open(report).read() if os.path.exists(report) else "# Drover benchmark report\n"
    start = text.find(title)
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
