#!/bin/sh
# Builds the C chat into a component: sh build.sh [OUT.wasm]
# (default: chat-c.wasm here). Needs Debian's clang, lld and wasi-libc
# (installed with apt-get on first use, as root) and jco (npm, for the
# WASI reactor adapter). The bindings are committed (guest-sdk/c/bindings).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${1:-$here/chat-c.wasm}"
bin="$(sh "$root/guest-sdk/toolchains/ensure.sh" c)"
sdk="$root/guest-sdk/c"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wno-unused-function \
    -I "$sdk" -I "$sdk/bindings" \
    "$here/chat.c" "$sdk/wsbox.c" "$sdk/bindings/websocket_host.c" \
    "$sdk/bindings/websocket_host_component_type.o" \
    -Wl,--strip-debug -o "$work/core.wasm"
# A core module importing wasi_snapshot_preview1: wrap it as a component
# with the reactor adapter (wasm-tools component new --adapt).
"$bin/jco" new "$work/core.wasm" --wasi-reactor -o "$out" >&2
