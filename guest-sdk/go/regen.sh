#!/bin/sh
# Regenerates the Go bindings from wit/websocket.wit and records the WIT's
# hash beside them (tests/polyglot.rs checks it). Needs `wit-bindgen`
# (cargo install wit-bindgen-cli --version 0.61.1). pkg/ is the
# go.bytecodealliance.org/pkg module that ships inside the crate
# wit-bindgen-go (src/pkg), which the generated code imports.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
wit_bindgen="${WIT_BINDGEN:-wit-bindgen}"
rm -rf "$here/bindings"
mkdir -p "$here/bindings"
(cd "$here/bindings" && "$wit_bindgen" go -w websocket-host "$root/wit")
sha256sum "$root/wit/websocket.wit" | cut -d' ' -f1 > "$here/bindings/WIT_SHA256"
"$wit_bindgen" --version > "$here/bindings/GENERATED_BY"
