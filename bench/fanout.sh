#!/usr/bin/env bash
# Hub fan-out benchmark (issue 8, "Hub at fleet scale"): N simulated devices against
# drover-hub with its embedded broker (rumqttd) and with Mosquitto (broker.url): bulk
# registration, apply -> all acknowledged (with API latency probes), a one-device change,
# steady-state heartbeats (hub CPU and RSS), hub restart. Writes bench/fanout-results.json
# and the fan-out section of bench/REPORT.md; prints the table.
#   bench/fanout.sh            N = 1,000 and 10,000, both brokers, 3 runs of each figure (~15-20 min)
#   bench/fanout.sh --smoke    N = 50, embedded broker only, one run of each (< 1 min)
#   options (bench/fanout.py): --runs N, --window S, --windows N, --only N:embedded|mosquitto, --out FILE
# Needs target/release/{drover-hub,drover-loadgen}
# (cargo build --release --locked -p drover-hub -p drover-bench-loadgen) and, for the
# full run, mosquitto. Everything it starts is stopped and its temp folder removed.
set -euo pipefail
cd "$(dirname "$0")/.."
# 10,000 MQTT connections in one process (loadgen) and in the hub's embedded broker:
# each needs a descriptor per connection plus headroom.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ] && [ "${1:-}" != "--smoke" ]; then
    echo "fanout.sh: the open file limit is $(ulimit -n); 10,000 devices need >= 12000" >&2
    exit 1
fi
exec python3 bench/fanout.py "$@"
