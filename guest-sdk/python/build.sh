#!/bin/sh
# Builds a Python handler into a component, as the examples' build.sh do:
#   sh guest-sdk/python/build.sh APP_DIR WORLD OUT.wasm
# APP_DIR holds module `app` (with `Handler, BatchHandler = exports(...)`),
# built against WORLD of wit/websocket.wit (`websocket-pubsub-handler`
# for pub/sub). componentize-py is installed into ~/.cache/wsbox/toolchains
# on first use. WSBOX_STUB_WASI=1 builds with --stub-wasi (no WASI imports).
set -eu
usage="usage: build.sh APP_DIR WORLD OUT.wasm"
app="${1:?$usage}"
world="${2:?$usage}"
out="${3:?$usage}"
sdk="$(cd "$(dirname "$0")" && pwd)"
root="$sdk/../.."
componentize_py="$(sh "$root/guest-sdk/toolchains/ensure.sh" python)"
stub=""
[ "${WSBOX_STUB_WASI:-}" = 1 ] && stub="--stub-wasi"
"$componentize_py" -d "$root/wit" -w "$world" \
    componentize $stub app -p "$app" -p "$sdk" -o "$out" >&2
