#!/usr/bin/env bash
# Runs a cross-built binary on this x86_64 machine through qemu-user (binfmt_misc is not
# mounted here, so the emulator is called explicitly).
#
#   cross/check-run.sh TARGET BIN [ARGS...]
#     TARGET: aarch64 | armv7 (or their triples); BIN: a name in target/<triple>/release/ or a path
#
# Pitfall (shared/CROSS-NOTES.md): never pass `-L /usr/<gnu>` when the multiarch libc of that
# architecture is installed (libc6:arm64): mixing the two libcs hangs or crashes threads. So
# -L is used only for a dynamic binary whose ELF interpreter does not exist on this machine.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "cross/check-run.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: cross/check-run.sh aarch64|armv7 BIN [ARGS...]"
case "$1" in
  aarch64 | arm64 | aarch64-unknown-linux-gnu) TRIPLE=aarch64-unknown-linux-gnu GNU=aarch64-linux-gnu QEMU=qemu-aarch64-static ;;
  armv7 | armhf | arm/v7 | armv7-unknown-linux-gnueabihf) TRIPLE=armv7-unknown-linux-gnueabihf GNU=arm-linux-gnueabihf QEMU=qemu-arm-static ;;
  *) die "unknown target '$1' (aarch64 or armv7)" ;;
esac
BIN=$2
shift 2
[[ $BIN == */* ]] || BIN="$ROOT/target/$TRIPLE/release/$BIN"
[ -x "$BIN" ] || die "$BIN not found: build it with cross/build.sh first"
command -v "$QEMU" >/dev/null || die "$QEMU missing: apt-get install qemu-user-static"
interp=$(readelf -l "$BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
if [ -n "$interp" ] && [ ! -e "$interp" ]; then
  [ -d "/usr/$GNU" ] || die "$BIN needs $interp: install libc6-dev-${GNU%%-*}-cross or the multiarch libc6"
  exec "$QEMU" -L "/usr/$GNU" "$BIN" "$@"
fi
exec "$QEMU" "$BIN" "$@"
