#!/bin/sh
# Builds the JavaScript chat into a component: sh build.sh [OUT.wasm]
# (default: chat-js.wasm here) with guest-sdk/javascript/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
# The world websocket-pubsub-handler imports the host's pub/sub (the chat
# imports guest-sdk/javascript/wsbox-pubsub.js); it has no batch handler.
exec sh "$here/../../guest-sdk/javascript/build.sh" "$here/chat.js" websocket-pubsub-handler "${1:-$here/chat-js.wasm}"
