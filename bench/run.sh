#!/usr/bin/env bash
# The wsbox benchmark matrix: installs the peers' dependencies, builds the
# release binaries, runs every scenario against every peer in interleaved
# rounds (A B C ... A B C ...), then writes a report (bench/report.py) into
# the run's results directory; `--out BENCHMARKS.md` updates the committed one.
#
# Each server runs pinned to CPU 0 and the load generator (`wsbox bench`)
# to CPU 1 (taskset), so the server has exactly one core. Everything binds
# to 127.0.0.1; every load run is bounded in time by `wsbox bench` itself.
#
# Usage: bench/run.sh [options]
#   --rounds N        rounds of the whole matrix (default 3; medians over them)
#   --duration D      measured time per echo/connect run (default 3s)
#   --warmup D        warm-up per run, excluded from results (default 1s)
#   --idle N          connections of the idle scenario (default 10000)
#   --peers "..."     subset of: wsbox native tornado websockets node, and for
#                     the broadcast scenarios wsbox_per_connection (wsbox with
#                     pubsub_fanout = "per_connection": the compression baseline)
#   --scenarios "..." subset of: echo_20b echo_4k echo_64k echo_compress connect idle
#                     broadcast_1k_20b broadcast_1k_1k broadcast_10k_20b broadcast_10k_1k
#                     broadcast_1k_20b_light (100,000 deliveries/s offered: latency below saturation)
#                     broadcast_1k_1k_compress broadcast_10k_1k_compress
#                     broadcast_1k_1k_compress_takeover
#                     idle_subscribed idle_unsubscribed (wsbox only: -s 0 idle
#                     connections to examples/broadcast, with and without a subscription)
#                     (default: the echo, connect and idle ones)
#   --broadcast-duration D  measured time per broadcast run (default 3s)
#   --no-micro        skip the criterion micro-benchmarks
#   --no-install      do not (re)install the Python/Node peers' dependencies
#   --no-build        use the existing release binaries
#   --out FILE        report to write (default bench/results/<timestamp>/BENCHMARKS.md;
#                     pass --out BENCHMARKS.md to replace the committed report)
#
# Results (raw JSON per run, server logs) go to bench/results/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bench="$root/bench"

rounds=3
duration=3s
warmup=1s
idle_n=10000
bduration=3s
# Publish rates (messages/s): 1,000 x 1000/s = 10,000 x 100/s = 1M deliveries/s offered.
brate_1k=${BRATE_1K:-1000}
brate_10k=${BRATE_10K:-100}
peers="wsbox native tornado websockets node"
scenarios="echo_20b echo_4k echo_64k echo_compress connect idle"
micro=1
install=1
build=1
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --idle) idle_n=$2; shift 2 ;;
        --broadcast-duration) bduration=$2; shift 2 ;;
        --peers) peers=$2; shift 2 ;;
        --scenarios) scenarios=$2; shift 2 ;;
        --no-micro) micro=0; shift ;;
        --no-install) install=0; shift ;;
        --no-build) build=0; shift ;;
        --out) out=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

target="${CARGO_TARGET_DIR:-$root/target}"
wsbox="$target/release/wsbox"
native="$target/release/native-echo"
native_broadcast="$target/release/native-broadcast"
results="$bench/results/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$results/logs"
out="${out:-$results/BENCHMARKS.md}"
log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$results/run.log" >&2; }
started=$(date +%s)

# The idle scenario holds 10,000 sockets in each process.
ulimit -n "$(ulimit -Hn)" || true
log "open files limit: $(ulimit -n)"

if [ "$(nproc)" -ge 2 ]; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
else
    log "fewer than 2 CPUs: running without pinning"
    server_cpu=()
    client_cpu=()
fi

# ---------------------------------------------------------------- install
skipped=()
have_peer() { case " $peers " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
drop_peer() {
    peers=$(echo " $peers " | sed "s/ $1 / /; s/^ *//; s/ *$//")
    skipped+=("$1: $2")
    log "skipping peer $1: $2"
}
if [ "$install" = 1 ]; then
    if have_peer tornado || have_peer websockets; then
        if [ ! -x "$bench/.venv/bin/python" ]; then
            python3 -m venv "$bench/.venv" || true
        fi
        if ! "$bench/.venv/bin/pip" install -q -r "$bench/peers/requirements.txt" >>"$results/run.log" 2>&1; then
            drop_peer tornado "pip install failed"
            drop_peer websockets "pip install failed"
        fi
    fi
    if have_peer node; then
        if ! (cd "$bench/peers/node" && npm ci --no-audit --no-fund >>"$results/run.log" 2>&1); then
            drop_peer node "npm ci failed"
        fi
    fi
fi
py="$bench/.venv/bin/python"

# ---------------------------------------------------------------- build
if [ "$build" = 1 ]; then
    log "building release binaries (the first build compiles wasmtime: minutes)"
    cargo build --release -p wsbox -p wsbox-bench-native-echo 2>&1 | tail -n 3
fi
[ -x "$wsbox" ] || { echo "run.sh: $wsbox missing (build failed?)" >&2; exit 1; }
if have_peer native && [ ! -x "$native" ]; then drop_peer native "binary missing"; fi

# ---------------------------------------------------------------- meta
{
    echo "{"
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\","
    echo "  \"dirty\": $( [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??' || true)" ] && echo true || echo false),"
    echo "  \"cpu\": \"$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)\","
    echo "  \"nproc\": $(nproc),"
    echo "  \"mem_gib\": $(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo),"
    echo "  \"kernel\": \"$(uname -r)\","
    echo "  \"rustc\": \"$(rustc --version 2>/dev/null)\","
    echo "  \"python\": \"$("$py" --version 2>/dev/null || true)\","
    echo "  \"tornado\": \"$("$py" -c 'import tornado; print(tornado.version)' 2>/dev/null || true)\","
    echo "  \"websockets\": \"$("$py" -c 'import websockets; print(websockets.__version__)' 2>/dev/null || true)\","
    echo "  \"node\": \"$(node --version 2>/dev/null || true)\","
    echo "  \"ws\": \"$(node -p "require('$bench/peers/node/node_modules/ws/package.json').version" 2>/dev/null || true)\","
    echo "  \"max_map_count\": $(cat /proc/sys/vm/max_map_count),"
    echo "  \"nofile\": $(ulimit -n),"
    echo "  \"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
    echo "  \"rounds\": $rounds, \"duration\": \"$duration\", \"warmup\": \"$warmup\", \"idle_connections\": $idle_n,"
    echo "  \"pinning\": \"$([ ${#server_cpu[@]} -gt 0 ] && echo 'server CPU 0, client CPU 1' || echo none)\""
    echo "}"
} >"$results/meta.json"
printf '%s\n' "${skipped[@]:-}" >"$results/skipped.txt"

# ---------------------------------------------------------------- servers
port=9100
server_pid=
# wsbox's broadcast server: bench/broadcast.toml with the handler next to it.
broadcast_dir="$results/broadcast-config"
mkdir -p "$broadcast_dir"
cp "$bench/broadcast.toml" "$broadcast_dir/broadcast.toml"
cp "$target/wasm-guests/wasm32-wasip2/guest/wsbox_example_broadcast.wasm" "$broadcast_dir/broadcast.wasm" 2>/dev/null ||
    log "examples/broadcast's wasm is missing: the wsbox broadcast runs will fail"

start_server() { # peer compress [kind: echo|broadcast]
    local peer=$1 compress=$2 kind=${3:-echo} flag=
    port=$((port + 1))
    [ "$compress" = 1 ] && flag=--compress
    local slog="$results/logs/server-$peer-$port.log"
    if [ "$kind" = broadcast ]; then
        case $peer in
            wsbox|wsbox_per_connection)
                # /broadcast and /broadcast-per-connection, compression on for
                # clients that offer it.
                sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$bench/broadcast.toml" >"$broadcast_dir/broadcast.toml"
                "${server_cpu[@]}" "$wsbox" serve --config "$broadcast_dir/broadcast.toml" >"$slog" 2>&1 & ;;
            native) "${server_cpu[@]}" "$native_broadcast" $flag "$port" >"$slog" 2>&1 & ;;
            tornado) "${server_cpu[@]}" "$py" "$bench/peers/tornado_broadcast.py" --port "$port" $flag >"$slog" 2>&1 & ;;
            websockets) "${server_cpu[@]}" "$py" "$bench/peers/websockets_broadcast.py" --port "$port" $flag >"$slog" 2>&1 & ;;
            node) "${server_cpu[@]}" node "$bench/peers/node/broadcast.js" --port "$port" $flag >"$slog" 2>&1 & ;;
        esac
        server_pid=$!
        wait_listening "$peer" "$slog"
        return
    fi
    case $peer in
        wsbox)
            # The bundled demo: /echo, permessage-deflate offered to clients that ask.
            "${server_cpu[@]}" "$wsbox" serve --listen "127.0.0.1:$port" >"$slog" 2>&1 & ;;
        native) "${server_cpu[@]}" "$native" $flag "$port" >"$slog" 2>&1 & ;;
        tornado) "${server_cpu[@]}" "$py" "$bench/peers/tornado_echo.py" --port "$port" $flag >"$slog" 2>&1 & ;;
        websockets) "${server_cpu[@]}" "$py" "$bench/peers/websockets_echo.py" --port "$port" $flag >"$slog" 2>&1 & ;;
        node) "${server_cpu[@]}" node "$bench/peers/node/echo.js" --port "$port" $flag >"$slog" 2>&1 & ;;
    esac
    server_pid=$!
    wait_listening "$peer" "$slog"
}
wait_listening() { # peer log
    local peer=$1 slog=$2
    # Ready when it says it listens (every peer prints that line).
    for _ in $(seq 1 300); do
        if grep -q "listening" "$slog" 2>/dev/null; then return 0; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    log "server $peer did not start; see $slog"
    stop_server
    return 1
}
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap stop_server EXIT

supports_compress() { # peer: can it negotiate permessage-deflate?
    # tokio-tungstenite has none. The bundled wsbox demo has compression on
    # (a client that does not offer it, as in the plain echo runs, gets none).
    case $1 in native) return 1 ;; esac
    return 0
}

run_one() { # scenario peer round
    local scenario=$1 peer=$2 round=$3 compress=0 kind=echo path=/echo
    local dir="$results/$scenario"
    mkdir -p "$dir"
    local args=()
    # Broadcast runs: rates chosen so that 1,000 and 10,000 subscribers are
    # offered the same deliveries per second (publish rate x subscribers).
    local bargs=(-d "$bduration" --warmup "$warmup" --open-concurrency 128)
    case $scenario in
        broadcast_*|idle_*)
            kind=broadcast; path=/broadcast
            [ "$peer" = wsbox_per_connection ] && path=/broadcast-per-connection ;;
        *)
            if [ "$peer" = wsbox_per_connection ]; then return 0; fi ;;
    esac
    case $scenario in
        broadcast_1k_20b) args=(broadcast -n 1000 -r "$brate_1k" -s 20 "${bargs[@]}") ;;
        broadcast_1k_1k) args=(broadcast -n 1000 -r "$brate_1k" -s 1KiB "${bargs[@]}") ;;
        # Below saturation: 100,000 deliveries/s offered, for latency.
        broadcast_1k_20b_light) args=(broadcast -n 1000 -r 100 -s 20 "${bargs[@]}") ;;
        broadcast_10k_20b) args=(broadcast -n 10000 -r "$brate_10k" -s 20 "${bargs[@]}") ;;
        broadcast_10k_1k) args=(broadcast -n 10000 -r "$brate_10k" -s 1KiB "${bargs[@]}") ;;
        broadcast_1k_1k_compress) args=(broadcast -n 1000 -r "$brate_1k" -s 1KiB --compress --server-no-context-takeover "${bargs[@]}"); compress=1 ;;
        broadcast_10k_1k_compress) args=(broadcast -n 10000 -r "$brate_10k" -s 1KiB --compress --server-no-context-takeover "${bargs[@]}"); compress=1 ;;
        # Without server_no_context_takeover: wsbox sends these subscribers the
        # shared frame uncompressed; the others compress with context takeover.
        broadcast_1k_1k_compress_takeover) args=(broadcast -n 1000 -r "$brate_1k" -s 1KiB --compress "${bargs[@]}"); compress=1 ;;
        idle_subscribed|idle_unsubscribed)
            if [ "$peer" != wsbox ]; then return 0; fi
            args=(idle -c "$idle_n" -s 0 -d 2s --settle 2s --open-concurrency 128)
            [ "$scenario" = idle_unsubscribed ] && path="/broadcast?subscribe=0" ;;
        echo_20b) args=(echo -c 100 -k 16 -s 20 -d "$duration" --warmup "$warmup") ;;
        echo_4k) args=(echo -c 100 -k 16 -s 4KiB -d "$duration" --warmup "$warmup") ;;
        echo_64k) args=(echo -c 100 -k 16 -s 64KiB -d "$duration" --warmup "$warmup") ;;
        echo_compress) args=(echo -c 100 -k 16 -s 1KiB --compress -d "$duration" --warmup "$warmup"); compress=1 ;;
        connect) args=(connect -c 64 -s 20 -d "$duration" --warmup "$warmup") ;;
        idle) args=(idle -c "$idle_n" -d 2s --settle 1s --open-concurrency 128) ;;
    esac
    if [ "$compress" = 1 ] && ! supports_compress "$peer"; then
        echo "{\"scenario\":\"$scenario\",\"label\":\"$peer\",\"skipped\":\"no permessage-deflate on this pair\"}" >"$dir/$peer.$round.json"
        return 0
    fi
    start_server "$peer" "$compress" "$kind" || {
        echo "{\"scenario\":\"$scenario\",\"label\":\"$peer\",\"skipped\":\"server did not start\"}" >"$dir/$peer.$round.json"
        return 0
    }
    case $scenario in idle*) args+=(--pid "$server_pid") ;; esac
    local cmd=("$wsbox" bench "${args[@]}" --url "ws://127.0.0.1:$port$path" --json --label "$peer")
    echo "${cmd[*]}" | sed "s|$target/release/||" >"$dir/command.txt"
    local outf="$dir/$peer.$round.out"
    # The server's CPU time (user + system) over the whole load run, opening
    # and warm-up included: when the load generator is what saturates, the
    # server's CPU per event still tells servers apart.
    local ticks0
    ticks0=$(awk '{print $14 + $15}' "/proc/$server_pid/stat" 2>/dev/null || echo 0)
    if "${client_cpu[@]}" "${cmd[@]}" >"$outf" 2>"$dir/$peer.$round.err"; then
        local ticks
        ticks=$(( $(awk '{print $14 + $15}' "/proc/$server_pid/stat" 2>/dev/null || echo "$ticks0") - ticks0 ))
        tail -n 1 "$outf" | python3 -c 'import json, os, sys
r = json.loads(sys.stdin.read())
r["server_cpu_s"] = int(sys.argv[1]) / os.sysconf("SC_CLK_TCK")
events = r.get("events", 0) + r.get("events_per_s", 0) * r.get("warmup_s", 0)
if events:
    r["server_cpu_us_per_event"] = round(r["server_cpu_s"] * 1e6 / events, 3)
print(json.dumps(r))' "$ticks" >"$dir/$peer.$round.json"
    else
        log "  $scenario/$peer round $round: load generator failed ($(tail -n 1 "$dir/$peer.$round.err"))"
        echo "{\"scenario\":\"$scenario\",\"label\":\"$peer\",\"failed\":true}" >"$dir/$peer.$round.json"
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        log "  $scenario/$peer round $round: the server died"
        echo "$peer died in $scenario round $round" >>"$results/server-deaths.txt"
    fi
    stop_server
    local summary
    summary=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("rss_per_connection_kib") or d.get("deliveries_per_s") or d.get("messages_per_s") or d.get("connections_per_s"), "errors", d.get("errors"), "drops", d.get("drops"), "server CPU us/event", d.get("server_cpu_us_per_event"))' "$dir/$peer.$round.json" 2>/dev/null || echo "?")
    log "  $scenario/$peer round $round: $summary"
}

matrix_start=$(date +%s)
for round in $(seq 1 "$rounds"); do
    log "round $round/$rounds"
    for scenario in $scenarios; do
        for peer in $peers; do
            run_one "$scenario" "$peer" "$round"
        done
    done
done
matrix_s=$(( $(date +%s) - matrix_start ))
log "matrix done in ${matrix_s}s"

# ---------------------------------------------------------------- micro
if [ "$micro" = 1 ]; then
    log "criterion micro-benchmarks (pinned to CPU 1)"
    CRITERION_HOME="$results/criterion" "${client_cpu[@]}" cargo bench -p wsbox --bench protocol --bench instance -- \
        --warm-up-time 0.5 --measurement-time 1.5 --noplot >"$results/micro.log" 2>&1 ||
        log "micro-benchmarks failed; see $results/micro.log"
fi

echo "{\"matrix_s\": $matrix_s, \"total_s\": $(( $(date +%s) - started )), \"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >"$results/timing.json"
python3 "$bench/report.py" "$results" "$out"
log "wrote $out (raw results in $results)"
