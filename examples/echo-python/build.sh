#!/bin/sh
# Builds the Python echo into a component: sh build.sh [OUT.wasm]
# (default: echo-python.wasm here) with guest-sdk/python/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
# WSBOX_STUB_WASI=1 builds with --stub-wasi (no WASI imports at all).
exec sh "$here/../../guest-sdk/python/build.sh" "$here" websocket-host "${1:-$here/echo-python.wasm}"
