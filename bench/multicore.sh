#!/usr/bin/env bash
# Multi-core echo and churn, wsbox against native tokio-tungstenite: no
# pinning, so each server runs one tokio worker per core and the load
# generator (`wsbox bench --threads 2`) shares the same cores. Three
# interleaved rounds; prints one line per run.
#
# Usage: bench/multicore.sh   (after cargo build --release -p wsbox -p wsbox-bench-native-echo)
set -uo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$(pwd)/target}/release"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=9400
run() { # peer args...
  local peer=$1; shift; port=$((port+1))
  if [ $peer = wsbox ]; then $T/wsbox serve --listen 127.0.0.1:$port > "$log" 2>&1 &
  else $T/native-echo $port > "$log" 2>&1 & fi
  local pid=$!
  for i in $(seq 100); do grep -qi listen "$log" && break; sleep 0.1; done
  local out=$($T/wsbox bench "$@" --url ws://127.0.0.1:$port/echo --json -q --threads 2 | tail -1)
  kill $pid; wait $pid 2>/dev/null
  python3 -c "
import json,sys
d=json.loads(sys.argv[1]); l=d['latency_us']
print(f\"{sys.argv[2]:6} {sys.argv[3]:8} {d.get('events_per_s',0):10.0f}/s p50 {l['p50']/1000:8.2f} ms p99 {l['p99']/1000:8.2f} ms\")
" "$out" "$peer" "$scn"
}
for r in 1 2 3; do
 for scn in 20 4KiB 64KiB connect; do
  for peer in wsbox native; do
   case $scn in
    connect) run $peer connect -c 64 -s 20 -d 3s --warmup 1s ;;
    *) run $peer echo -c 100 -k 16 -s $scn -d 3s --warmup 1s ;;
   esac
  done
 done
done
