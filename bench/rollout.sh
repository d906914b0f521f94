#!/usr/bin/env bash
# Health-gated rollout benchmark (issue 11): 1,000 simulated devices reporting health
# (drover-loadgen fleet --health) against a release drover-hub with its embedded broker; a
# RollingUpdate Deployment (canary 10%, batchSize 10%, minReadySeconds 0) rolled out 3
# times (apply -> RolloutComplete: total time, time per batch, hub CPU and peak RSS,
# plan/sign/commit per step), once with a bad image (-> RolledBack: time, devices that
# ever got it), then the controller's per-step work alone (hub/examples/rollout_step.rs).
# Writes bench/rollout-results.json and the "Rollouts (issue 11)" section of bench/REPORT.md.
#   bench/rollout.sh            1,000 devices, 3 good rollouts + 1 failing (~3 min)
#   bench/rollout.sh --smoke    50 devices, 1 + 1 (< 1 min)
#   options (bench/rollout.py): --devices N, --runs N, --ready-after-ms MS, --out FILE, --report FILE
# Needs target/release/{drover-hub,drover-loadgen,examples/rollout_step}; builds them
# unless BENCH_NO_BUILD=1. Everything it starts is stopped and its temp folder removed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --locked -p drover-hub -p drover-bench-loadgen --bins >&2
    cargo build --release --locked -p drover-hub --example rollout_step >&2
fi
# 1,000 MQTT connections in one process (loadgen) and in the hub's embedded broker.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/rollout.py "$@"
