#!/usr/bin/env bash
# RUSTC_WRAPPER of bench/fuzz.sh: adds the sanitizer-coverage flags ($DROVER_SANCOV) only
# to the crates whose code decodes outside input: Drover's own crates and the parsers
# they call (serde/serde_json, TOML, YAML, postcard, tar, gzip, zstd, oci-spec). The
# runtime underneath the hub and agent (tokio, rustls/ring, libcontainer, rumqttd,
# SQLite, axum, ...) is built plainly: libFuzzer needs no coverage from it, and leaving it
# out keeps the instrumented build cheap. Host builds (build scripts, proc macros, which
# cargo compiles without --target) are never instrumented.
set -euo pipefail
rustc=$1
shift
name=
target=0
prev=
for a in "$@"; do
    [ "$prev" != --crate-name ] || name=$a
    [ "$a" != --target ] || target=1
    prev=$a
done
case "$name" in
drover_* | serde | serde_core | serde_json | serde_saphyr | granit_parser | toml | toml_parser | \
    toml_datetime | serde_spanned | winnow | postcard | tar | flate2 | miniz_oxide | ruzstd | oci_spec)
    [ "$target" = 0 ] || exec "$rustc" "$@" $DROVER_SANCOV
    ;;
esac
exec "$rustc" "$@"
