#!/bin/sh
# Builds the Go echo into a component: sh build.sh [OUT.wasm]
# (default: echo-go.wasm here) with guest-sdk/go/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
exec sh "$here/../../guest-sdk/go/build.sh" "$here/app" "${1:-$here/echo-go.wasm}"
