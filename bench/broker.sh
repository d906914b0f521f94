#!/usr/bin/env bash
# Embedded broker at its honest size: the hub's embedded rumqttd alone
# (drover-embedded-broker) and Mosquitto under N = 1,000 / 2,000 / 5,000 / 10,000 simulated
# devices, 3 runs each. Writes bench/broker-results.json and prints medians [min-max].
# Method and conclusions: bench/broker.md.
#   bench/broker.sh                          the headline table (~30-40 min on 2 cores)
#   bench/broker.sh --n 10000 --runs 1       one size
#   bench/broker.sh --brokers rumqttd --rumqttd-args="--max-inflight-count 10"   try a setting
# Builds what it needs (release); needs mosquitto (apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ]; then
    echo "broker.sh: the open file limit is $(ulimit -n); 10,000 devices need >= 12000 (one descriptor per connection in each process)" >&2
    exit 1
fi
cargo build --release --locked -q -p drover-bench-embedded-broker -p drover-bench-loadgen
exec python3 bench/broker.py "$@"
