#!/usr/bin/env bash
# Fair shares under a hostile route (issue: containment). One wsbox server
# with two routes: /calm (the bundled echo handler) and /spin (the chaos
# test handler). A bystander load (`wsbox bench echo` on /calm) runs alone,
# then while N connections keep making /spin handlers spin until their CPU
# budget kills them (bench/peers/spinners.py, reconnecting at once). Both
# runs are repeated with the route's turns (`max_concurrent_calls`) at the
# default (workers - 1) and at the number of workers (no reserve), to show
# what the turns buy.
#
# `tenants` mode: the same between two tenants made through the admin API.
# Tenant `a` serves the chaos handler at two routes (/a/spin1, /a/spin2;
# each route's own turns would then let it take both workers of a 2-core
# machine), tenant `b` the echo demo at /b/calm; the spinners are split
# over a's two routes. Repeated with a's `max_concurrent_calls` at the
# default (workers - 1) and at the number of workers.
#
# `logs` mode: routes /calm and /spin as in `routes`, but the hostile load
# is 10 connections (SPINNERS is ignored) making /spin handlers log as fast
# as they can (bench/peers/logflood.py: 300 lines of 10 KB and 300 stdout
# lines per message); the table also gives the bytes the server logged.
#
# Server and load generators share the machine's cores (the server is not
# pinned: fairness is about its worker threads). Loopback only; every run is
# bounded in time.
#
# Usage: bench/fairness.sh [SPINNERS] [SECONDS] [routes|tenants|logs]
#        (default 50 spinners, 5 s runs, routes)
# Needs: a release build (cargo build --release), the test guests built by
# `cargo test --no-run`, and tests/peers/.venv (bash tests/peers/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
spinners=${1:-50}
seconds=${2:-5}
mode=${3:-routes}
target="${CARGO_TARGET_DIR:-$root/target}"
wsbox="${WSBOX_BIN:-$target/release/wsbox}"
guests="$target/wasm-guests/wasm32-wasip2/guest"
python="$root/tests/peers/.venv/bin/python"
for f in "$wsbox" "$guests/wsbox_example_echo.wasm" "$guests/wsbox_test_guest_chaos.wasm" "$python"; do
    [ -e "$f" ] || { echo "fairness.sh: missing $f (see the header for what to build)" >&2; exit 1; }
done
workers=$(nproc)
out="$root/bench/results/fairness-$mode-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
port=9420

run_server() { # $1 = max_concurrent_calls for /spin
    cat >"$out/wsbox.toml" <<TOML
listen = "127.0.0.1:$port"

[[route]]
path = "/calm"
module = "$guests/wsbox_example_echo.wasm"

[[route]]
path = "/spin"
module = "$guests/wsbox_test_guest_chaos.wasm"
max_concurrent_calls = $1
TOML
    "$wsbox" serve --config "$out/wsbox.toml" >"$out/server-$1.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        grep -q listening "$out/server-$1.log" 2>/dev/null && return
        sleep 0.1
    done
    echo "fairness.sh: the server did not start" >&2
    exit 1
}

admin_port=9421
export WSBOX_ADMIN="http://127.0.0.1:$admin_port" WSBOX_ADMIN_TOKEN="fairness-bench-token"

run_tenant_server() { # $1 = tenant a's max_concurrent_calls
    rm -rf "$out/data"
    cat >"$out/wsbox.toml" <<TOML
listen = "127.0.0.1:$port"

[admin]
listen = "127.0.0.1:$admin_port"
data_dir = "$out/data"
TOML
    "$wsbox" serve --config "$out/wsbox.toml" >"$out/server-$1.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        "$wsbox" tenants >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$wsbox" tenant a --path-prefix /a --max-concurrent-calls "$1" >/dev/null
    "$wsbox" tenant b --path-prefix /b >/dev/null
    for r in spin1 spin2; do
        "$wsbox" deploy "$guests/wsbox_test_guest_chaos.wasm" --tenant a --module "$r" --route "/$r" >/dev/null
    done
    "$wsbox" deploy "$guests/wsbox_example_echo.wasm" --tenant b --module calm --route /calm >/dev/null
}

calm_path=/calm
[ "$mode" = tenants ] && calm_path=/b/calm

bystander() { # prints the bench's JSON line
    "$wsbox" bench echo --url "ws://127.0.0.1:$port$calm_path" -c 10 -k 4 -s 20 \
        -d "${seconds}s" --warmup 1s --json -q | tail -n 1
}

row() { # label json
    python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
label, data, base = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
rate, lat = data["messages_per_s"], data["latency_us"]
ratio = ""
if base:
    b = json.loads(base)
    ratio = "%.2fx / %.1fx" % (rate / b["messages_per_s"], lat["p99"] / b["latency_us"]["p99"])
print("| %s | %s | %s | %s | %s |" % (label, format(int(rate), ","), format(int(lat["p50"]), ","),
      format(int(lat["p99"]), ","), ratio or "1.00x / 1.0x"))
PY
}

spin() { # $1 = turns; runs the spinners in the background, sets $spin
    if [ "$mode" = tenants ]; then
        half=$((spinners / 2))
        ( "$python" bench/peers/spinners.py "ws://127.0.0.1:$port/a/spin1" "$half" $((seconds + 3)) &
          "$python" bench/peers/spinners.py "ws://127.0.0.1:$port/a/spin2" $((spinners - half)) $((seconds + 3))
          wait ) >"$out/kills-$1.txt" &
    elif [ "$mode" = logs ]; then
        "$python" bench/peers/logflood.py "ws://127.0.0.1:$port/spin" 10 $((seconds + 3)) >"$out/kills-$1.txt" &
    else
        "$python" bench/peers/spinners.py "ws://127.0.0.1:$port/spin" "$spinners" $((seconds + 3)) >"$out/kills-$1.txt" &
    fi
    spin=$!
}

trap 'kill "${server:-}" 2>/dev/null || true' EXIT
what="/spin turns"
[ "$mode" = tenants ] && what="tenant a's turns"
echo "| $what (max_concurrent_calls) | bystander messages/s | p50 us | p99 us | vs alone: throughput / p99 |" >"$out/table.md"
echo "|---|---:|---:|---:|---:|" >>"$out/table.md"
rounds="$(( workers > 1 ? workers - 1 : 1 )) $workers"
[ "$mode" = logs ] && rounds="$(( workers > 1 ? workers - 1 : 1 ))"
for turns in $rounds; do
    if [ "$mode" = tenants ]; then run_tenant_server "$turns"; else run_server "$turns"; fi
    alone=$(bystander)
    row "$turns, bystander alone" "$alone" >>"$out/table.md"
    spin "$turns"
    sleep 1
    log_before=$(stat -c %s "$out/server-$turns.log")
    busy=$(bystander)
    log_after=$(stat -c %s "$out/server-$turns.log")
    wait "$spin" || true
    if [ "$mode" = logs ]; then
        row "$turns, with 10 log flooders ($(( (log_after - log_before) / seconds / 1024 )) KiB/s of log)" "$busy" "$alone" >>"$out/table.md"
    else
        row "$turns, with $spinners spinners" "$busy" "$alone" >>"$out/table.md"
    fi
    kill "$server"
    wait "$server" 2>/dev/null || true
done
cat "$out/table.md"
echo "results: $out" >&2
