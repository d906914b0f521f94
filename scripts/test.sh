#!/usr/bin/env bash
# Sets up and runs every test of the workspace: unit tests, property tests and the
# end-to-end tests with real agents, shims and containers (those need root; as root a
# skipped root-only test is an error).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --locked
# The example images (amd64, arm64, arm/v7) for the demo-flow test; installs the cross
# toolchain on first use.
images/build.sh
if [ "$(id -u)" = 0 ]; then
  export DROVER_REQUIRE_ROOT=1
fi
cargo test --workspace --locked "$@"
