#!/usr/bin/env bash
# Telemetry ingest benchmark (issue 12): 10,000 simulated devices (drover-loadgen fleet)
# sending a sealed telemetry sample every 10 s through Mosquitto to a release drover-hub;
# hub CPU/RSS with heartbeats only (before) and with telemetry on top, in the same run;
# /metrics scrape time, GET /v1/telemetry and `top` at 10,000 devices.
# Writes bench/telemetry-results.json and the "Telemetry (issue 12)" section of REPORT.md.
#   bench/telemetry.sh            10,000 devices, 3 windows of 30 s each way (~6 min)
#   bench/telemetry.sh --smoke    200 devices, short windows (< 1 min)
#   options (bench/telemetry.py): --devices N, --workloads N, --windows N, --window-s S
# Needs target/release/{drover-hub,drover-loadgen}; builds them unless BENCH_NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --locked -p drover-hub -p drover-bench-loadgen --bins >&2
fi
# 10,000 MQTT connections in one process (loadgen) and in Mosquitto.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/telemetry.py "$@"
