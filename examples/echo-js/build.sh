#!/bin/sh
# Builds the JavaScript echo into a component: sh build.sh [OUT.wasm]
# (default: echo-js.wasm here). jco 1.34 (componentize-js) is installed
# into ~/.cache/wsbox/toolchains on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${1:-$here/echo-js.wasm}"
bin="$(sh "$root/guest-sdk/toolchains/ensure.sh" javascript)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# componentize-js takes one module: bundle the SDK and the handler.
cp "$root/guest-sdk/javascript/wsbox.js" "$root/guest-sdk/javascript/wsbox.d.ts" "$here/echo.js" "$work/"
# The SDK imports the host's logging at the WIT package's version.
version="$(sed -n 's/^package wsbox:websocket@\([0-9.]*\);/\1/p' "$root/wit/websocket.wit")"
sed -i "s|wsbox:websocket/logging@[0-9.]*'|wsbox:websocket/logging@$version'|" "$work/wsbox.js"
"$bin/rolldown" "$work/echo.js" --format esm --external "wsbox:websocket/logging@$version" --file "$work/bundle.js" >/dev/null
# -d http -d fetch-event: wsbox grants no wasi:http, so the build must not import it.
"$bin/jco" componentize "$work/bundle.js" --wit "$root/wit" -n websocket-host \
    -d http -d fetch-event -o "$out" >&2
