#!/usr/bin/env bash
# Runs the Autobahn testsuite against wsbox (../shared/conformance/autobahn.sh).
#
#   tests/autobahn.sh server [full|ci]   fuzz the release server's echo route (compression on)
#   tests/autobahn.sh client [full|ci]   run the wsbox client against the fuzzing server
#
# "full" runs every case (1.* to 13.*): about 20 minutes for the server on
# a 2-core machine, mostly in the compression cases 12.* and 13.*. "ci" (the
# default) runs all of 1.* to 10.* plus a fixed sample of 12.*/13.* (each
# group's messages 1-6, 11 and 12: every compression parameter set, small and
# medium messages): about 3 minutes. Needs `cargo build --release` first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
autobahn="$root/../shared/conformance/autobahn.sh"
mode="${1:-server}"
scope="${2:-ci}"

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

export AUTOBAHN_REQUIRE_ALL=1
export AUTOBAHN_OUT="${AUTOBAHN_OUT:-$root/target/autobahn-reports}"
case "$mode" in
    server)
        port="${AUTOBAHN_PORT:-9001}"
        exec bash "$autobahn" server-test "ws://127.0.0.1:$port/echo" "$(cases)" \
            -- "$root/target/release/wsbox" serve --listen "127.0.0.1:$port" --max-message-size 32MiB
        ;;
    client)
        port="${AUTOBAHN_PORT:-9002}"
        exec bash "$autobahn" client-test "$port" "$(cases)" \
            -- "$root/target/release/examples/autobahn_client" "ws://127.0.0.1:$port"
        ;;
    *)
        echo "usage: tests/autobahn.sh server|client [full|ci]" >&2
        exit 2
        ;;
esac
