#!/bin/sh
# Builds a JavaScript handler into a component, as the examples' build.sh do:
#   sh guest-sdk/javascript/build.sh HANDLER.js WORLD OUT.wasm
# HANDLER.js (with the other .js files beside it) is bundled with the SDK
# (wsbox.js, and wsbox-pubsub.js for a handler that imports it) and built
# against WORLD of wit/websocket.wit (`websocket-pubsub-handler` for
# pub/sub). jco 1.34 (componentize-js) is installed into
# ~/.cache/wsbox/toolchains on first use.
set -eu
usage="usage: build.sh HANDLER.js WORLD OUT.wasm"
entry="${1:?$usage}"
world="${2:?$usage}"
out="${3:?$usage}"
sdk="$(cd "$(dirname "$0")" && pwd)"
root="$sdk/../.."
bin="$(sh "$root/guest-sdk/toolchains/ensure.sh" javascript)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# componentize-js takes one module: bundle the SDK and the handler.
cp "$(dirname "$entry")"/*.js "$sdk/wsbox.js" "$sdk/wsbox.d.ts" \
    "$sdk/wsbox-pubsub.js" "$sdk/wsbox-pubsub.d.ts" "$work/"
# The SDK imports the host's interfaces at the WIT package's version.
version="$(sed -n 's/^package wsbox:websocket@\([0-9.]*\);/\1/p' "$root/wit/websocket.wit")"
sed -i "s|wsbox:websocket/\(logging\|pubsub\)@[0-9.]*'|wsbox:websocket/\1@$version'|" \
    "$work/wsbox.js" "$work/wsbox-pubsub.js"
"$bin/rolldown" "$work/$(basename "$entry")" --format esm \
    --external "wsbox:websocket/logging@$version" --external "wsbox:websocket/pubsub@$version" \
    --file "$work/bundle.js" >/dev/null
# -d http -d fetch-event: wsbox grants no wasi:http, so the build must not import it.
"$bin/jco" componentize "$work/bundle.js" --wit "$root/wit" -n "$world" \
    -d http -d fetch-event -o "$out" >&2
