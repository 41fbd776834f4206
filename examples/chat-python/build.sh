#!/bin/sh
# Builds the Python chat into a component: sh build.sh [OUT.wasm]
# (default: chat-python.wasm here) with guest-sdk/python/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
# The world websocket-pubsub-handler imports the host's pub/sub.
exec sh "$here/../../guest-sdk/python/build.sh" "$here" websocket-pubsub-handler "${1:-$here/chat-python.wasm}"
