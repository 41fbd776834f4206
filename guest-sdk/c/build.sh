#!/bin/sh
# Builds a C handler into a component, as the examples' build.sh do:
#   sh guest-sdk/c/build.sh OUT.wasm HANDLER.c...
# Needs Debian's clang, lld and wasi-libc (installed with apt-get on first
# use, as root) and jco (npm, for the WASI reactor adapter). The bindings
# are committed (guest-sdk/c/bindings, for the world websocket-host).
set -eu
out="${1:?usage: build.sh OUT.wasm HANDLER.c...}"
shift
[ "$#" -gt 0 ] || { echo "usage: build.sh OUT.wasm HANDLER.c..." >&2; exit 2; }
sdk="$(cd "$(dirname "$0")" && pwd)"
bin="$(sh "$sdk/../toolchains/ensure.sh" c)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wno-unused-function \
    -I "$sdk" -I "$sdk/bindings" \
    "$@" "$sdk/wsbox.c" "$sdk/bindings/websocket_host.c" \
    "$sdk/bindings/websocket_host_component_type.o" \
    -Wl,--strip-debug -o "$work/core.wasm"
# A core module importing wasi_snapshot_preview1: wrap it as a component
# with the reactor adapter (wasm-tools component new --adapt).
"$bin/jco" new "$work/core.wasm" --wasi-reactor -o "$out" >&2
