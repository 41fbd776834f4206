#!/usr/bin/env bash
# Runs the Autobahn testsuite against wsbox (the driver is tests/conformance/).
#
#   tests/autobahn.sh server [full|ci]   fuzz the release server's echo route (compression on)
#   tests/autobahn.sh client [full|ci]   run the wsbox client against the fuzzing server
#
# "full" runs every case (1.* to 13.*): about 20 minutes for the server on
# a 2-core machine, mostly in the compression cases 12.* and 13.*. "ci" (the
# default) runs all of 1.* to 10.* plus a fixed sample of 12.*/13.* (each
# group's messages 1-6, 11 and 12: every compression parameter set, small and
# medium messages): about 3 minutes. Needs `cargo build --release --bins
# --examples` first, and python3. The testsuite itself (wstest, Python 2.7
# only) is installed on first use, with a Python 2.7 if the machine has none,
# into $AUTOBAHN_HOME (default ~/.cache/wsbox/autobahn): see
# tests/conformance/install.py.
#
# Environment:
#   AUTOBAHN_PORT         loopback port to use (server 9001, client 9002)
#   AUTOBAHN_OUT          reports and logs (default target/autobahn-reports)
#   WSBOX_BIN             the server (default target/release/wsbox)
#   AUTOBAHN_CLIENT_BIN   the client (default target/release/examples/autobahn_client)
#   AUTOBAHN_REQUIRE_ALL  1 (default): UNIMPLEMENTED cases count as failed
#   AUTOBAHN_TIMEOUT      wall-clock limit of the run in seconds (default 3600)
#
# Exit status: 0 every selected case passed, 1 some failed, 2 the run could
# not be done (see tests/conformance/run.py). The last line printed is
# "N passed, M failed".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-server}"
scope="${2:-ci}"

usage() {
    echo "usage: tests/autobahn.sh server|client [full|ci]" >&2
    exit 2
}

cases() {
    if [ "$scope" = full ]; then
        echo "*"
        return
    fi
    local list="1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
    local g n
    for g in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
        for n in 1 2 3 4 5 6 11 12; do
            list="$list,$g.$n"
        done
    done
    echo "$list"
}

# needs NAME PATH: PATH must be a built executable.
needs() {
    if [ ! -x "$2" ]; then
        echo "tests/autobahn.sh: $1 $2 is missing: run cargo build --release --bins --examples first" >&2
        exit 2
    fi
}

case "$scope" in full | ci) ;; *) usage ;; esac
command -v python3 >/dev/null || { echo "tests/autobahn.sh: python3 is needed" >&2; exit 2; }
export AUTOBAHN_REQUIRE_ALL="${AUTOBAHN_REQUIRE_ALL:-1}"
export AUTOBAHN_OUT="${AUTOBAHN_OUT:-$root/target/autobahn-reports}"
run=(python3 "$root/tests/conformance/run.py")
case "$mode" in
    server)
        port="${AUTOBAHN_PORT:-9001}"
        wsbox="${WSBOX_BIN:-$root/target/release/wsbox}"
        needs server "$wsbox"
        # --no-admin: the fuzzed server needs no control plane (which would
        # take port 9090 and a data directory in $HOME).
        exec "${run[@]}" server "ws://127.0.0.1:$port/echo" "$(cases)" \
            -- "$wsbox" serve --listen "127.0.0.1:$port" --max-message-size 32MiB --no-admin
        ;;
    client)
        port="${AUTOBAHN_PORT:-9002}"
        client="${AUTOBAHN_CLIENT_BIN:-$root/target/release/examples/autobahn_client}"
        needs client "$client"
        exec "${run[@]}" client "$port" "$(cases)" -- "$client" "ws://127.0.0.1:$port"
        ;;
    *)
        usage
        ;;
esac
