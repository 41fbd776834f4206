#!/usr/bin/env bash
# A/B of wsbox builds against each other and native tokio-tungstenite, for
# before/after numbers of one change: interleaved rounds, server pinned to
# CPU 0 and the load generator to CPU 1, medians printed at the end.
#
# Usage: bench/ab.sh [-r ROUNDS] [-- BENCH ARGS...] LABEL=WSBOX_BINARY...
#   e.g. bench/ab.sh -r 5 before=/tmp/wsbox-before after=target/release/wsbox
#        bench/ab.sh after=target/release/wsbox -- connect -c 64 -s 20
# Default bench args: echo -c 100 -k 16 -s 20 -d 3s --warmup 1s.
# `native` (target/release/native-echo) is always included as the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$(pwd)/target}"
rounds=3
bench_args=(echo -c 100 -k 16 -s 20 -d 3s --warmup 1s)
peers=()
while [ $# -gt 0 ]; do
    case $1 in
        -r) rounds=$2; shift 2 ;;
        --) shift; bench_args=(); while [ $# -gt 0 ] && [[ $1 != *=* ]]; do bench_args+=("$1"); shift; done ;;
        *=*) peers+=("$1"); shift ;;
        *) echo "ab.sh: unexpected argument $1" >&2; exit 2 ;;
    esac
done
[ ${#peers[@]} -gt 0 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
native="$target/release/native-echo"
[ -x "$native" ] || { echo "ab.sh: build the baseline first: cargo build --release -p wsbox-bench-native-echo" >&2; exit 1; }
peers+=("native=$native")
client="$target/release/wsbox"
out=$(mktemp -d)
port=9500
pid=
stop() { [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=; }
trap stop EXIT

for round in $(seq 1 "$rounds"); do
    for peer in "${peers[@]}"; do
        label=${peer%%=*} bin=${peer#*=}
        port=$((port + 1))
        if [ "$label" = native ]; then
            taskset -c 0 "$bin" "$port" >"$out/server.log" 2>&1 &
        else
            taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" >"$out/server.log" 2>&1 &
        fi
        pid=$!
        for _ in $(seq 1 100); do grep -q listening "$out/server.log" && break; sleep 0.1; done
        ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        result=$(taskset -c 1 "$client" bench "${bench_args[@]}" --url "ws://127.0.0.1:$port/echo" --json -q | tail -n 1)
        # Server CPU (user + system, clock ticks) over the run, warm-up
        # included: steadier than throughput on a shared machine.
        ticks=$(( $(awk '{print $14 + $15}' "/proc/$pid/stat") - ticks0 ))
        stop
        read -r rate errors cpu_us < <(python3 -c 'import json,os,sys
r = json.loads(sys.argv[1]); hz = os.sysconf("SC_CLK_TCK")
total = r["events"] + r["events_per_s"] * r.get("warmup_s", 0)
print(r["events_per_s"], r["errors"], round(int(sys.argv[2]) / hz * 1e6 / max(total, 1), 2))' "$result" "$ticks")
        echo "round $round $label $rate/s errors $errors server CPU ${cpu_us} us/event"
        echo "$label $rate $cpu_us" >>"$out/rates"
    done
done
python3 - "$out/rates" <<'EOF'
import statistics, sys
rates, cpus = {}, {}
for line in open(sys.argv[1]):
    label, rate, cpu = line.split()
    rates.setdefault(label, []).append(float(rate))
    cpus.setdefault(label, []).append(float(cpu))
base = statistics.median(rates["native"])
base_cpu = statistics.median(cpus["native"])
for label, values in rates.items():
    m = statistics.median(values)
    c = statistics.median(cpus[label])
    print(f"{label:>10}: median {m:,.0f}/s  (min {min(values):,.0f}, max {max(values):,.0f})  {m / base:.2f}x native;"
          f"  server CPU {c:.2f} us/event ({base_cpu / c:.2f}x native's efficiency)")
EOF
rm -rf "$out"
