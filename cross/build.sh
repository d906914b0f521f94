#!/usr/bin/env bash
# Builds workspace binaries for ARM boards with Debian 12's rustc-web (see shared/CROSS-NOTES.md).
#
#   cross/build.sh TARGET BIN [BIN...]
#     TARGET: aarch64 | arm64 | aarch64-unknown-linux-gnu
#             armv7 | armhf | arm/v7 | armv7-unknown-linux-gnueabihf
#     BIN:    a workspace binary name (its package is looked up) or PACKAGE:BIN
#
# Output: target/<triple>/release/<bin> (release profile of the workspace: stripped, LTO).
# Installs what it needs with apt when missing (needs root then). Never touches rustup, never
# writes a rust-toolchain or .cargo/config file: everything is passed by environment.
#
# Environment:
#   CROSS_RUSTFLAGS   extra rustc flags for the target (e.g. "-C target-feature=+crt-static")
#   CROSS_FORCE=1     try to build even what is known not to compile for the target
#   CROSS_NO_INSTALL=1  never run apt; fail if something is missing
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "cross/build.sh: $*" >&2; exit 1; }
say() { echo "cross/build.sh: $*" >&2; }

[ $# -ge 2 ] || die "usage: cross/build.sh aarch64|armv7 BIN [BIN...]"
case "$1" in
  aarch64 | arm64 | aarch64-unknown-linux-gnu)
    TRIPLE=aarch64-unknown-linux-gnu DEBARCH=arm64 GNU=aarch64-linux-gnu QEMU=qemu-aarch64-static ;;
  armv7 | armhf | arm/v7 | armv7-unknown-linux-gnueabihf)
    TRIPLE=armv7-unknown-linux-gnueabihf DEBARCH=armhf GNU=arm-linux-gnueabihf QEMU=qemu-arm-static ;;
  *) die "unknown target '$1' (aarch64 or armv7)" ;;
esac
shift
BINS=("$@")

missing_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

apt_install() {
  [ $# -eq 0 ] && return 0
  [ "${CROSS_NO_INSTALL:-}" != 1 ] || die "missing packages (CROSS_NO_INSTALL=1): $*"
  [ "$(id -u)" = 0 ] || die "missing packages, run as root or install them: $*"
  say "installing: $*"
  apt-get update -q || say "warning: apt-get update reported errors (continuing)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "$@"
}

ensure_toolchain() {
  local common=(rustc-web cargo-web "gcc-$GNU" qemu-user-static jq file binutils)
  if [ "$DEBARCH" = arm64 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      [ "$(id -u)" = 0 ] || die "run as root once: dpkg --add-architecture arm64"
      dpkg --add-architecture arm64
    fi
    # shellcheck disable=SC2046
    apt_install $(missing_pkgs "${common[@]}" libc6-dev-arm64-cross libstd-rust-web-dev:arm64 \
      libseccomp-dev:arm64 pkgconf pkgconf:arm64)
    local rv sv
    rv=$(dpkg-query -W -f='${Version}' rustc-web)
    sv=$(dpkg-query -W -f='${Version}' libstd-rust-web-dev:arm64)
    [ "$rv" = "$sv" ] || die "rustc-web $rv but libstd-rust-web-dev:arm64 $sv: run apt-get install rustc-web libstd-rust-web-dev:arm64 to align them"
  else
    # shellcheck disable=SC2046
    apt_install $(missing_pkgs "${common[@]}" libc6-dev-armhf-cross)
    armhf_sysroot
  fi
}

# The armhf std goes into a private sysroot (adding the armhf architecture breaks apt-get update
# while Debian's armhf security index is stale on the mirror).
armhf_sysroot() {
  local ver dir deb lists
  ver=$(dpkg-query -W -f='${Version}' rustc-web)
  dir="$ROOT/target/cross/sysroot-armhf-$ver"
  SYSROOT="$dir/usr"
  [ -f "$dir/.complete" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir/dl" "$dir/lists/partial"
  lists=(-o "Dir::State::Lists=$dir/lists" -o "APT::Architectures::=armhf")
  say "fetching libstd-rust-web-dev:armhf $ver into $dir"
  apt-get -q "${lists[@]}" update >"$dir/apt-update.log" 2>&1 || true
  if ! (cd "$dir/dl" && apt-get -q "${lists[@]}" download "libstd-rust-web-dev:armhf=$ver" >/dev/null 2>&1); then
    fetch_armhf_from_pool "$ver" "$dir/dl"
  fi
  deb=$(ls "$dir"/dl/libstd-rust-web-dev_*_armhf.deb)
  [ "$(dpkg-deb -f "$deb" Version)" = "$ver" ] || die "$deb is not version $ver"
  dpkg-deb -x "$deb" "$dir"
  [ -d "$SYSROOT/lib/rustlib/$TRIPLE/lib" ] || die "no $TRIPLE std in $deb"
  touch "$dir/.complete"
}

# Fallback when apt refuses the (stale) armhf security index: take the .deb's pool path and
# sha256 from that index and check the download against it.
fetch_armhf_from_pool() {
  local ver=$1 out=$2 base idx entry file sum
  say "apt could not use the armhf security index (mirror stale?); using the pool path from it"
  for base in http://deb.debian.org/debian-security/dists/bookworm-security http://deb.debian.org/debian/dists/bookworm; do
    idx=$(curl -fsS "$base/main/binary-armhf/Packages.xz" | xz -dc) || continue
    entry=$(awk -v v="$ver" 'BEGIN { RS = "" }
      index("\n" $0 "\n", "\nPackage: libstd-rust-web-dev\n") && index($0 "\n", "\nVersion: " v "\n")' <<<"$idx")
    file=$(sed -n 's/^Filename: //p' <<<"$entry" | head -1)
    sum=$(sed -n 's/^SHA256: //p' <<<"$entry" | head -1)
    [ -n "$file" ] || continue
    curl -fsS -o "$out/${file##*/}" "${base%/dists/*}/$file"
    echo "$sum  $out/${file##*/}" | sha256sum -c --quiet || die "checksum mismatch for $file"
    say "warning: $file verified against an index whose signature chain apt rejected"
    return 0
  done
  die "libstd-rust-web-dev:armhf $ver not found in Debian's indexes"
}

# BIN or PACKAGE:BIN → "PACKAGE BIN"
resolve_bin() {
  local spec=$1 pkg
  if [[ $spec == *:* ]]; then echo "${spec%%:*} ${spec#*:}"; return; fi
  pkg=$(jq -r --arg b "$spec" '.packages[] | select(.targets[] | select(.kind | index("bin")) | .name == $b) | .name' \
    <<<"$METADATA" | head -1)
  [ -n "$pkg" ] || die "no workspace binary named '$spec'"
  echo "$pkg $spec"
}

# Known not to compile for 32-bit ARM: anything depending on libcontainer 0.7.
refuse_32bit() {
  local pkg=$1 bin=$2
  [ "$TRIPLE" = armv7-unknown-linux-gnueabihf ] && [ "${CROSS_FORCE:-}" != 1 ] || return 0
  if cargo_debian tree -q -p "$pkg" --target "$TRIPLE" -e normal --prefix none 2>/dev/null |
    grep -q '^libcontainer '; then
    say "'$bin' ($pkg) cannot be built for armv7: it depends on libcontainer 0.7, which does not"
    say "compile for 32-bit targets (i64/i32 TimeVal and u64/u32 rlim_t mismatches in"
    say "libcontainer/libcgroups). armv7 agents are a later step; build it for aarch64 instead,"
    say "or set CROSS_FORCE=1 to see the compiler errors."
    exit 3
  fi
}

cargo_debian() {
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER RUSTC=/usr/bin/rustc /usr/bin/cargo "$@"
}

main() {
  ensure_toolchain
  cd "$ROOT"
  METADATA=$(cargo_debian metadata --no-deps --format-version 1)
  local up flags=() args=() spec pkg bin
  up=$(tr 'a-z-' 'A-Z_' <<<"$TRIPLE")
  [ -n "${SYSROOT:-}" ] && flags+=(--sysroot "$SYSROOT")
  # shellcheck disable=SC2206
  flags+=(${CROSS_RUSTFLAGS:-})
  for spec in "${BINS[@]}"; do
    read -r pkg bin < <(resolve_bin "$spec")
    refuse_32bit "$pkg" "$bin"
    args+=(-p "$pkg" --bin "$bin")
  done
  [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ] && say "note: ignoring RUSTFLAGS (use CROSS_RUSTFLAGS)"
  say "building ${BINS[*]} for $TRIPLE with $(/usr/bin/rustc --version)"
  export "CARGO_TARGET_${up}_LINKER=$GNU-gcc" "CARGO_TARGET_${up}_RUNNER=$QEMU"
  export "CARGO_TARGET_${up}_RUSTFLAGS=${flags[*]}"
  export "CC_${TRIPLE//-/_}=$GNU-gcc" "AR_${TRIPLE//-/_}=$GNU-ar"
  command -v "$GNU-pkg-config" >/dev/null && export "PKG_CONFIG_${TRIPLE//-/_}=$GNU-pkg-config"
  cargo_debian build --release --target "$TRIPLE" "${args[@]}"
  for spec in "${BINS[@]}"; do
    bin=${spec#*:}
    local out="target/$TRIPLE/release/$bin"
    printf '%s  %s bytes (%s KiB)\n' "$out" "$(stat -c %s "$out")" "$(($(stat -c %s "$out") / 1024))"
  done
}

main
