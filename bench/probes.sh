#!/usr/bin/env bash
# Probe cost (issue 11): agent + shims CPU and RSS with 10 HTTP-probed workloads vs none.
#   bench/probes.sh [--no-build] [extra args for bench/harness/probes.py]
# Writes bench/probes-results.json and the Probes section of bench/REPORT.md. Root only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ "${1:-}" = --no-build ]; then shift; else
  cargo build --release --locked -p drover-agent --bin drover-agent
  cargo build --locked -p drover-tests --bin busybox-layout
fi
python3 bench/harness/probes.py --out bench/probes-results.json --report bench/REPORT.md "$@"
