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
# Server and load generators share the machine's cores (the server is not
# pinned: fairness is about its worker threads). Loopback only; every run is
# bounded in time.
#
# Usage: bench/fairness.sh [SPINNERS] [SECONDS]   (default 50 spinners, 5 s runs)
# Needs: a release build (cargo build --release), the test guests built by
# `cargo test --no-run`, and tests/peers/.venv (bash tests/peers/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
spinners=${1:-50}
seconds=${2:-5}
target="${CARGO_TARGET_DIR:-$root/target}"
wsbox="${WSBOX_BIN:-$target/release/wsbox}"
guests="$target/wasm-guests/wasm32-wasip2/guest"
python="$root/tests/peers/.venv/bin/python"
for f in "$wsbox" "$guests/wsbox_example_echo.wasm" "$guests/wsbox_test_guest_chaos.wasm" "$python"; do
    [ -e "$f" ] || { echo "fairness.sh: missing $f (see the header for what to build)" >&2; exit 1; }
done
workers=$(nproc)
out="$root/bench/results/fairness-$(date -u +%Y%m%d-%H%M%S)"
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

bystander() { # prints the bench's JSON line
    "$wsbox" bench echo --url "ws://127.0.0.1:$port/calm" -c 10 -k 4 -s 20 \
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

trap 'kill "${server:-}" 2>/dev/null || true' EXIT
echo "| /spin turns (max_concurrent_calls) | bystander messages/s | p50 us | p99 us | vs alone: throughput / p99 |" >"$out/table.md"
echo "|---|---:|---:|---:|---:|" >>"$out/table.md"
for turns in $(( workers > 1 ? workers - 1 : 1 )) "$workers"; do
    run_server "$turns"
    alone=$(bystander)
    row "$turns, bystander alone" "$alone" >>"$out/table.md"
    "$python" bench/peers/spinners.py "ws://127.0.0.1:$port/spin" "$spinners" $((seconds + 3)) >"$out/kills-$turns.txt" &
    spin=$!
    sleep 1
    busy=$(bystander)
    wait "$spin" || true
    row "$turns, with $spinners spinners ($(cat "$out/kills-$turns.txt") killed)" "$busy" "$alone" >>"$out/table.md"
    kill "$server"
    wait "$server" 2>/dev/null || true
done
cat "$out/table.md"
echo "results: $out" >&2
