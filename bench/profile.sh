#!/usr/bin/env bash
# Profiles wsbox's echo path with valgrind's callgrind (instruction counts;
# `perf stat -e instructions` is not supported on this VM, so perf cannot
# count instructions here). The server runs under callgrind pinned to CPU 0
# with a small pool (valgrind cannot map the default pool's 1.3 TB of
# reservations); `wsbox bench echo` drives a fixed number of messages from
# CPU 1. The report lists the inclusive cost of the main functions per
# message echoed.
#
# Usage: bench/profile.sh [SIZE] [MESSAGES]     (default 20 B, 20000 messages)
#        SCENARIO=connect bench/profile.sh 20 2000   (connection churn: 2000 cycles)
# Needs: valgrind (apt-get install valgrind), a release build (or WSBOX_BIN=path
# to profile another wsbox binary, e.g. the build before a change).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
size=${1:-20}
messages=${2:-20000}
target="${CARGO_TARGET_DIR:-$root/target}"
wsbox="${WSBOX_BIN:-$target/release/wsbox}"
echo_wasm=$(ls "$target"/wasm-guests/wasm32-wasip2/guest/wsbox_example_echo.wasm 2>/dev/null | head -n1)
[ -x "$wsbox" ] && [ -n "$echo_wasm" ] || { echo "profile.sh: build first (cargo build --release)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "profile.sh: valgrind missing (apt-get install valgrind)" >&2; exit 1; }

scenario=${SCENARIO:-echo}
out="$root/bench/results/profile-$(date -u +%Y%m%d-%H%M%S)-${scenario}-${size}"
mkdir -p "$out"
port=9390
cat >"$out/wsbox.toml" <<EOF
listen = "127.0.0.1:$port"

[runtime]
max_instances = 32
max_memory_per_instance = "64MiB"

[[route]]
path = "/echo"
module = "$echo_wasm"
EOF

taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
    --instr-atstart=no \
    "$wsbox" serve --config "$out/wsbox.toml" >"$out/server.log" 2>&1 &
vg=$!
trap 'kill $vg 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    grep -q listening "$out/server.log" 2>/dev/null && break
    kill -0 $vg 2>/dev/null || { cat "$out/server.log"; exit 1; }
    sleep 0.2
done
# Count from here: startup (compiling the module) is not part of the echo path.
callgrind_control -i on $vg >/dev/null
# A few connections with 16 in flight: enough to batch like the real run.
if [ "$scenario" = connect ]; then
    taskset -c 1 "$wsbox" bench connect --url "ws://127.0.0.1:$port/echo" -c 8 -s "$size" \
        --warmup 0s --duration 120s --messages "$messages" --json -q >"$out/bench.out"
else
    taskset -c 1 "$wsbox" bench echo --url "ws://127.0.0.1:$port/echo" -c 10 -k 16 -s "$size" \
        --warmup 0s --duration 120s --messages "$messages" --json -q >"$out/bench.out"
fi
tail -n 1 "$out/bench.out"
kill -INT $vg
wait $vg || true
trap - EXIT

total_msgs=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["events"])' "$out/bench.out")
callgrind_annotate --inclusive=yes "$out/callgrind.out" >"$out/inclusive.txt" 2>/dev/null || true
callgrind_annotate --inclusive=no "$out/callgrind.out" >"$out/self.txt" 2>/dev/null || true
echo "$scenario events while profiled (messages or connections): $total_msgs" | tee "$out/summary.txt"
callgrind_annotate --inclusive=no --auto=no --threshold=100 "$out/callgrind.out" >"$out/self_all.txt" 2>/dev/null || true
python3 "$root/bench/callgrind_by_crate.py" "$out/self_all.txt" "$total_msgs" | tee -a "$out/summary.txt"
echo "callgrind output: $out (inclusive.txt, self.txt)" | tee -a "$out/summary.txt"
