#!/bin/sh
# Builds the JavaScript chat into a component: sh build.sh [OUT.wasm]
# (default: chat-js.wasm here). jco 1.34 (componentize-js) is installed
# into ~/.cache/wsbox/toolchains on first use. The world
# `websocket-pubsub-handler` imports the host's pub/sub, which the chat
# gets through guest-sdk/javascript/wsbox-pubsub.js.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${1:-$here/chat-js.wasm}"
bin="$(sh "$root/guest-sdk/toolchains/ensure.sh" javascript)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# componentize-js takes one module: bundle the SDK and the handler.
cp "$root/guest-sdk/javascript/wsbox.js" "$root/guest-sdk/javascript/wsbox.d.ts" \
    "$root/guest-sdk/javascript/wsbox-pubsub.js" "$root/guest-sdk/javascript/wsbox-pubsub.d.ts" \
    "$here/chat.js" "$work/"
# The SDK imports the host's interfaces at the WIT package's version.
version="$(sed -n 's/^package wsbox:websocket@\([0-9.]*\);/\1/p' "$root/wit/websocket.wit")"
sed -i "s|wsbox:websocket/\(logging\|pubsub\)@[0-9.]*'|wsbox:websocket/\1@$version'|" \
    "$work/wsbox.js" "$work/wsbox-pubsub.js"
"$bin/rolldown" "$work/chat.js" --format esm \
    --external "wsbox:websocket/logging@$version" --external "wsbox:websocket/pubsub@$version" \
    --file "$work/bundle.js" >/dev/null
# -d http -d fetch-event: wsbox grants no wasi:http, so the build must not import it.
"$bin/jco" componentize "$work/bundle.js" --wit "$root/wit" -n websocket-pubsub-handler \
    -d http -d fetch-event -o "$out" >&2
