#!/usr/bin/env bash
# Installs what building and testing Drover needs on Debian 12 (run as root).
# Idempotent: only missing packages are installed.
set -euo pipefail

# chromium: the dashboard test drives a real headless browser (tests/tests/dashboard.rs).
# g++: libFuzzer (C++) for the fuzz smoke run in CI (bench/fuzz.sh).
need=(busybox-static libseccomp-dev pkg-config gcc g++ iproute2 mosquitto mosquitto-clients python3 docker-registry skopeo umoci chromium)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust (rustup, stable >= 1.95) first" >&2
  exit 1
fi
