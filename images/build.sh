#!/usr/bin/env bash
# Builds the example workloads (sensor-sim, uptime-http) as static binaries for linux/amd64
# (host toolchain), linux/arm64 and linux/arm/v7 (cross/build.sh, Debian's rustc-web), and
# writes one multi-platform OCI image layout per program, tagged `latest`:
#   target/images/sensor-sim/   target/images/uptime-http/
# Use them as oci:target/images/sensor-sim:latest (skopeo, umoci, drover-hub image import).
# First run installs the cross toolchain with apt (as root), see cross/build.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATIC="-C target-feature=+crt-static"
BINS=(sensor-sim uptime-http)
start=$(date +%s)
say() { echo "images/build.sh: $*" >&2; }

say "linux/amd64 (host toolchain)"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$STATIC" \
  cargo build --release --target x86_64-unknown-linux-gnu -p drover-sensor-sim -p drover-uptime-http
say "linux/arm64"
CROSS_RUSTFLAGS="$STATIC" cross/build.sh aarch64 "${BINS[@]}"
say "linux/arm/v7"
CROSS_RUSTFLAGS="$STATIC" cross/build.sh armv7 "${BINS[@]}"

declare -A TRIPLE=([amd64]=x86_64-unknown-linux-gnu [arm64]=aarch64-unknown-linux-gnu [arm/v7]=armv7-unknown-linux-gnueabihf)
for bin in "${BINS[@]}"; do
  for p in amd64 arm64 arm/v7; do
    f="target/${TRIPLE[$p]}/release/$bin"
    file "$f" | grep -Eq 'statically linked|static-pie linked' || { say "$f is not statically linked: $(file -b "$f")"; exit 1; }
  done
done

cargo build -q -p drover-oci-pack
pack() {
  local bin=$1
  shift
  target/debug/oci-pack --out "target/images/$bin" --tag latest --path "/bin/$bin" "$@" \
    --platform "linux/amd64=target/x86_64-unknown-linux-gnu/release/$bin" \
    --platform "linux/arm64=target/aarch64-unknown-linux-gnu/release/$bin" \
    --platform "linux/arm/v7=target/armv7-unknown-linux-gnueabihf/release/$bin"
}
pack sensor-sim --env PATH=/bin --env INTERVAL=5s --user nobody
pack uptime-http --env PATH=/bin --env PORT=8080 --user nobody --expose 8080/tcp
say "done in $(($(date +%s) - start)) s: oci:target/images/sensor-sim:latest oci:target/images/uptime-http:latest"
