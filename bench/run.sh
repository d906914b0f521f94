#!/usr/bin/env bash
# The benchmark, one command (root, Debian 12; installs crun, runc, mosquitto when missing):
#
#   bench/run.sh                 # full run (~35 min): writes bench/results.json, bench/REPORT.md, bench/plots/,
#                                # bench/fanout-results.json, bench/rollout-results.json
#   bench/run.sh --smoke         # CI: few runs, 1-2 workloads, 20 updates, no cross build (< 3 min);
#                                # writes target/bench-smoke/{results.json,REPORT.md}
#   options: --out DIR (where results.json / REPORT.md go), --no-build (use target/release as is),
#            --reuse-fanout (skip the ~20 min fan-out; its section comes from bench/fanout-results.json)
#
# Parts: bench/harness/agent.py (agent memory, start latency vs crun/runc, memory across
# updates), target/release/drover-bench-wire (wire sizes), bench/harness/sizes.py (binary
# sizes; full mode cross-builds the aarch64 agent when missing), then bench/fanout.sh when it
# exists and is executable (hub at fleet scale, issue 8: `bench/fanout.sh [--smoke] --out RUN_DIR/fanout.json`,
# BENCH_OUT_DIR/BENCH_SMOKE also in its environment), bench/rollout.sh when it exists (health-gated
# rollouts, issue 11: `--smoke` = 50 devices), and bench/harness/report.py merges everything into
# results.json and REPORT.md (the Rollouts section is spliced in by bench/rollout.py --report-from).
# Exits non-zero when any part fails; every container, mount and cgroup it made is removed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SMOKE=0 OUT="" BUILD=1 REUSE_FANOUT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT=${2:?--out DIR}; shift ;;
    --no-build) BUILD=0 ;;
    --reuse-fanout) REUSE_FANOUT=1 ;;
    -h | --help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "bench/run.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "must run as root (containers, cgroups)"; exit 1; }
# Install what the benchmark needs (Debian packages), like scripts/setup.sh does for tests.
missing=()
for p in python3:python3 crun:crun runc:runc unshare:util-linux file:file mosquitto:mosquitto; do
  command -v "${p%%:*}" >/dev/null || missing+=("${p#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -z "$OUT" ]; then
  if [ "$SMOKE" = 1 ]; then OUT="$ROOT/target/bench-smoke"; else OUT="$ROOT/bench"; fi
fi
mkdir -p "$OUT"
START=$(date +%s)

if [ "$BUILD" = 1 ]; then
  say "building release binaries (incremental)"
  PKGS=(-p drover-agent -p drover-hub -p drover-tests -p drover-bench-wire)
  [ -f bench/loadgen/Cargo.toml ] && PKGS+=(-p drover-bench-loadgen)
  cargo build --release --locked "${PKGS[@]}" --bins || { say "build failed"; exit 1; }
fi

RUN=$(mktemp -d /tmp/drover-bench-run.XXXXXX)
trap 'rm -rf "$RUN"' EXIT
FAIL=()

if [ "$SMOKE" = 1 ]; then AGENT_ARGS=(--runs 5 --workloads 2 --updates 20); else AGENT_ARGS=(--runs 30 --workloads 10 --updates 1000); fi
say "agent: memory, start latency (drover / crun / runc), updates: ${AGENT_ARGS[*]}"
python3 bench/harness/agent.py --out "$RUN/agent.json" "${AGENT_ARGS[@]}" || FAIL+=(agent)

say "wire sizes"
if target/release/drover-bench-wire > "$RUN/wire.json.tmp"; then mv "$RUN/wire.json.tmp" "$RUN/wire.json"; else FAIL+=(wire); fi

say "binary sizes"
SIZE_ARGS=()
[ "$SMOKE" = 1 ] || SIZE_ARGS=(--build-aarch64)
python3 bench/harness/sizes.py --out "$RUN/sizes.json" "${SIZE_ARGS[@]}" || FAIL+=(sizes)

if [ "$REUSE_FANOUT" = 1 ] && [ -f bench/fanout-results.json ]; then
  say "hub fan-out: not run (--reuse-fanout): the section comes from bench/fanout-results.json"
  cp bench/fanout-results.json "$RUN/fanout.json"
elif [ -x bench/fanout.sh ]; then
  say "hub fan-out: bench/fanout.sh"
  FAN_ARGS=()
  [ "$SMOKE" = 1 ] && FAN_ARGS=(--smoke)
  BENCH_OUT_DIR="$RUN" BENCH_SMOKE="$SMOKE" bench/fanout.sh "${FAN_ARGS[@]}" --out "$RUN/fanout.json" || FAIL+=(fanout)
  # A full run into bench/ also refreshes the fan-out's own results file (REPORT.md links it).
  if [ "$SMOKE" = 0 ] && [ "$OUT" = "$ROOT/bench" ] && [ -f "$RUN/fanout.json" ]; then
    cp "$RUN/fanout.json" bench/fanout-results.json
  fi
else
  say "bench/fanout.sh missing or not executable: hub fan-out skipped"
fi

if [ -x bench/rollout.sh ]; then
  say "rollouts: bench/rollout.sh"
  ROLL_ARGS=()
  [ "$SMOKE" = 1 ] && ROLL_ARGS=(--smoke)
  BENCH_NO_BUILD=$([ "$BUILD" = 1 ] && echo 0 || echo 1) \
    bench/rollout.sh "${ROLL_ARGS[@]}" --out "$RUN/rollout.json" || FAIL+=(rollout)
  # A full run into bench/ also refreshes the rollouts' own results file.
  if [ "$SMOKE" = 0 ] && [ "$OUT" = "$ROOT/bench" ] && [ -f "$RUN/rollout.json" ]; then
    cp "$RUN/rollout.json" bench/rollout-results.json
  fi
fi

MODE=full CMD="bench/run.sh"
[ "$SMOKE" = 1 ] && MODE=smoke CMD="bench/run.sh --smoke"
python3 bench/harness/report.py --dir "$RUN" --results "$OUT/results.json" --report "$OUT/REPORT.md" \
  --mode "$MODE" --command "$CMD" --seconds "$(( $(date +%s) - START ))" || FAIL+=(report)
if [ -f "$RUN/rollout.json" ]; then
  python3 bench/rollout.py --report-from "$RUN/rollout.json" --report "$OUT/REPORT.md" || FAIL+=(report)
fi

# Telemetry ingest (issue 12): spliced into the report just written.
if [ -x bench/telemetry.sh ]; then
  say "telemetry: bench/telemetry.sh"
  TEL_ARGS=(--report "$OUT/REPORT.md")
  [ "$SMOKE" = 1 ] && TEL_ARGS+=(--smoke)
  BENCH_NO_BUILD=$([ "$BUILD" = 1 ] && echo 0 || echo 1) \
    bench/telemetry.sh "${TEL_ARGS[@]}" >/dev/null || FAIL+=(telemetry)
fi

# Agent-side telemetry cost and measured idle uplink (issue 12): ~20 s in smoke mode, so that
# the harness cannot rot; the full figures come from bench/agent-telemetry.sh (~6 min).
if [ "$SMOKE" = 1 ] && [ -x bench/agent-telemetry.sh ]; then
  say "agent telemetry (smoke): bench/agent-telemetry.sh --smoke"
  BENCH_NO_BUILD=1 bench/agent-telemetry.sh --smoke --out "$OUT/agent-telemetry-results.json" >/dev/null \
    || FAIL+=(agent-telemetry)
fi

# Nothing of ours may be left: bench cgroups, mounts, runtime containers.
LEFT=$(ls -d /sys/fs/cgroup/*/drover-bench-* 2>/dev/null; grep -o ' /tmp/drover-bench-[^ ]*' /proc/self/mountinfo)
if [ -n "$LEFT" ]; then say "left behind: $LEFT"; FAIL+=(cleanup); fi

say "done in $(( $(date +%s) - START )) s: $OUT/REPORT.md"
if [ ${#FAIL[@]} -gt 0 ]; then say "FAILED: ${FAIL[*]}"; exit 1; fi
