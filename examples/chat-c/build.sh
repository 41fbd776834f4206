#!/bin/sh
# Builds the C chat into a component: sh build.sh [OUT.wasm]
# (default: chat-c.wasm here) with guest-sdk/c/build.sh, which
# installs the toolchain on first use.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
exec sh "$here/../../guest-sdk/c/build.sh" "${1:-$here/chat-c.wasm}" "$here/chat.c"
