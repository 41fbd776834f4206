#!/bin/sh
# Builds the Python echo into a component: sh build.sh [OUT.wasm]
# (default: echo-python.wasm here). componentize-py is installed into
# ~/.cache/wsbox/toolchains on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${1:-$here/echo-python.wasm}"
componentize_py="$(sh "$root/guest-sdk/toolchains/ensure.sh" python)"
# WSBOX_STUB_WASI=1 builds with --stub-wasi (no WASI imports at all).
stub=""
[ "${WSBOX_STUB_WASI:-}" = 1 ] && stub="--stub-wasi"
"$componentize_py" -d "$root/wit" -w websocket-host \
    componentize $stub app -p "$here" -p "$root/guest-sdk/python" -o "$out" >&2
