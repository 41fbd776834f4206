#!/bin/sh
# Builds the C echo into a component: sh build.sh [OUT.wasm]
# (default: echo-c.wasm here) with guest-sdk/c/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
exec sh "$here/../../guest-sdk/c/build.sh" "${1:-$here/echo-c.wasm}" "$here/echo.c"
