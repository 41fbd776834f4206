#!/bin/sh
# Builds the Python chat into a component: sh build.sh [OUT.wasm]
# (default: chat-python.wasm here). componentize-py is installed into
# ~/.cache/wsbox/toolchains on first use. The world
# `websocket-pubsub-handler` imports the host's pub/sub.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${1:-$here/chat-python.wasm}"
componentize_py="$(sh "$root/guest-sdk/toolchains/ensure.sh" python)"
"$componentize_py" -d "$root/wit" -w websocket-pubsub-handler \
    componentize app -p "$here" -p "$root/guest-sdk/python" -o "$out" >&2
