#!/usr/bin/env bash
# What CI runs for cross builds: build the agent for aarch64 (so a dependency that breaks ARM
# is caught at once), check that the ELF really is AArch64, and run `drover-agent --version`
# under qemu-aarch64-static. Installs the toolchain on first use (root; see cross/build.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
cross/build.sh aarch64 drover-agent
bin=target/aarch64-unknown-linux-gnu/release/drover-agent
file "$bin"
file "$bin" | grep -q 'ELF 64-bit LSB .*ARM aarch64' || { echo "cross/ci.sh: $bin is not an aarch64 ELF" >&2; exit 1; }
readelf -h "$bin" | grep -Eq 'Machine:[[:space:]]+AArch64' || { echo "cross/ci.sh: readelf: not AArch64" >&2; exit 1; }
out=$(timeout 120 cross/check-run.sh aarch64 drover-agent --version)
echo "$out"
grep -q '^drover-agent ' <<<"$out" || { echo "cross/ci.sh: unexpected --version output" >&2; exit 1; }
echo "cross/ci.sh: ok (aarch64 agent $(stat -c %s "$bin") bytes, $(($(date +%s) - start)) s)"
