#!/usr/bin/env bash
# Coverage-guided fuzzing of Drover's decoders (fuzz/): builds the targets with the
# stable toolchain and libFuzzer (libfuzzer-sys), runs each for SECONDS_PER_TARGET, and
# prints execs and crashes per target. Exit status 1 when any target crashed.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    # default 120 s, all targets
#   bench/fuzz.sh 10                                  # smoke run (CI)
#
# Instrumentation: stable `-C` flags only (the same sanitizer-coverage options cargo-fuzz
# passes with `--sanitizer none`); no nightly, no RUSTC_BOOTSTRAP. Crashes and their
# logs land in fuzz/artifacts/<target>/, inputs with new coverage in fuzz/corpus/<target>/
# (both ignored by git); the committed seeds are fuzz/seeds/<target>/ (`cargo run --bin
# seeds` in fuzz/ writes them again); fuzz/regressions/<target>/ holds every crash found,
# minimised, replayed at each run (each also has a unit test beside the code it broke).
set -euo pipefail

secs=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire manifest config strings fleet hub_config agent_config registry v2 layer)
cd "$(dirname "$0")/../fuzz"

# Instrumentation only for Drover's crates and the parsers they call (fuzz/rustc-sancov.sh).
export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing"
export DROVER_SANCOV="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0"
export RUSTC_WRAPPER="$PWD/rustc-sancov.sh"
triple=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps RUSTFLAGS off build scripts (libfuzzer-sys's cc build).
cargo build --release --locked --target "$triple" --bins
bin=target/$triple/release

[ -d seeds/layer ] || "$bin/seeds"
# Scratch space of the targets that need folders (layer, v2): tmpfs when there is one.
scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/drover-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export DROVER_FUZZ_TMP=$scratch TMPDIR=$scratch

status=0
printf '%-12s %8s %12s %10s %8s %8s\n' target seconds execs execs/s cov crashes
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    touch "artifacts/$t/.started"
    # -fork=1 -ignore_crashes=1 would keep going after a crash; one crash is enough to act on.
    set +e
    t0=$(date +%s)
    dirs=("corpus/$t" "seeds/$t")
    [ ! -d "regressions/$t" ] || dirs+=("regressions/$t")
    "$bin/$t" "${dirs[@]}" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    ran=$(( $(date +%s) - t0 ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    crashes=$(find "artifacts/$t" -maxdepth 1 -type f -newer "artifacts/$t/.started" \( -name 'crash-*' -o -name 'oom-*' \
        -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    printf '%-12s %8s %12s %10s %8s %8s\n' "$t" "$ran" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "$crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        status=1
        echo "  $t: exit $rc, see fuzz/$log" >&2
    fi
done
exit $status
