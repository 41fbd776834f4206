#!/bin/sh
# Builds the JavaScript echo into a component: sh build.sh [OUT.wasm]
# (default: echo-js.wasm here) with guest-sdk/javascript/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
exec sh "$here/../../guest-sdk/javascript/build.sh" "$here/echo.js" websocket-host "${1:-$here/echo-js.wasm}"
