#!/usr/bin/env python3
"""Binary sizes: release drover-agent / drover-hub and the example images' binaries for x86_64,
aarch64 and armv7, as found in target/. With --build-aarch64 the aarch64 agent is built with
cross/build.sh when it is missing (a clean build takes ~5 min on 2 cores).

Usage: python3 bench/harness/sizes.py --out FILE [--build-aarch64]
"""
import argparse, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, dump

TARGETS = {
    "x86_64": ["target/release", "target/x86_64-unknown-linux-gnu/release"],
    "aarch64": ["target/aarch64-unknown-linux-gnu/release"],
    "armv7": ["target/armv7-unknown-linux-gnueabihf/release"],
}
BINS = ["drover-agent", "drover-hub", "sensor-sim", "uptime-http"]
NOT_BUILDABLE = {("armv7", "drover-agent"): "not buildable: libcontainer 0.7 is not 32-bit clean (see cross/build.sh)"}


def find(arch, b):
    for d in TARGETS[arch]:
        p = os.path.join(ROOT, d, b)
        if os.path.isfile(p):
            return p
    return None


def stripped(p):
    try:
        out = subprocess.run(["file", "-b", p], capture_output=True, text=True).stdout
    except OSError:
        return None
    return "not stripped" not in out if ("stripped" in out) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--build-aarch64", action="store_true")
    args = ap.parse_args()
    built = None
    if args.build_aarch64 and not find("aarch64", "drover-agent"):
        print("sizes.py: building drover-agent for aarch64 (cross/build.sh)", file=sys.stderr)
        r = subprocess.run([os.path.join(ROOT, "cross/build.sh"), "aarch64", "drover-agent"])
        built = r.returncode == 0
    rows = []
    for b in BINS:
        for arch in TARGETS:
            p = find(arch, b)
            row = {"binary": b, "arch": arch}
            if p:
                row.update(bytes=os.path.getsize(p), path=os.path.relpath(p, ROOT), stripped=stripped(p))
            else:
                row["note"] = NOT_BUILDABLE.get((arch, b), "not built (cross/build.sh %s %s)" % (arch, b))
            rows.append(row)
    dump({"rows": rows, "aarch64_built_now": built}, args.out)


if __name__ == "__main__":
    main()
