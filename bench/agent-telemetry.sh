#!/usr/bin/env bash
# What telemetry costs on the device (issue 12), measured with real agents and containers:
# agent CPU (utime+stime) and RSS/HWM with telemetry off, at 10 s and at 1 s, side by side
# over the same windows (5 idle busybox workloads each); and the idle uplink of one agent at
# the defaults, in its own network namespace behind a veth pair (byte counters; a tcpdump
# breakdown when tcpdump is installed). Root only.
# Writes bench/agent-telemetry-results.json and its part of the "Telemetry (issue 12)"
# section of REPORT.md.
#   bench/agent-telemetry.sh           5 windows of 60 s, 300 s of uplink, at the same time (~6 min)
#   bench/agent-telemetry.sh --smoke   1 workload, 2 windows of 5 s, 10 s of uplink (< 1 min)
#   options (bench/agent_telemetry.py): --workloads N, --windows N, --window-s S, --uplink-s S
#                                      (0: no uplink part), --uplink-workloads N, --out, --report
# Needs target/release/{drover-hub,drover-agent,busybox-layout} (and drover-bench-wire for the
# model beside the measured uplink); builds them unless BENCH_NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --locked -p drover-hub -p drover-agent -p drover-tests -p drover-bench-wire \
        --bin drover-hub --bin drover-agent --bin busybox-layout --bin drover-bench-wire >&2
fi
exec python3 bench/agent_telemetry.py "$@"
