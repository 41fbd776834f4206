#!/usr/bin/env python3
"""Writes BENCHMARKS.md from a bench/run.sh results directory.

Usage: python3 bench/report.py RESULTS_DIR OUT.md

Reads RESULTS_DIR/<scenario>/<peer>.<round>.json (the last line of each
`wsbox bench --json` run), RESULTS_DIR/meta.json and timing.json, and the
criterion estimates under RESULTS_DIR/criterion. For each scenario and peer
it reports the median over the rounds, the spread (min-max, and as +-% of
the median), and the ratio of the median to native tokio-tungstenite's.
bench/ANALYSIS.md (hand-written: profiles, proposals) is appended verbatim.

With --broadcast-only it writes just the broadcast section (the
broadcast_* and idle_(un)subscribed scenarios), to paste into BENCHMARKS.md.
"""

import glob
import json
import os
import statistics
import sys

PEERS = ["wsbox", "native", "tornado", "websockets", "node"]
PEER_NAMES = {
    "wsbox": "wsbox (Rust echo guest, wasm)",
    "native": "native tokio-tungstenite",
    "tornado": "Tornado",
    "websockets": "Python websockets",
    "node": "Node ws",
}
SCENARIOS = [
    ("echo_20b", "Echo, 20 B text, 100 connections x 16 in flight", "messages_per_s", "messages/s"),
    ("echo_4k", "Echo, 4 KiB text, 100 connections x 16 in flight", "messages_per_s", "messages/s"),
    ("echo_64k", "Echo, 64 KiB text, 100 connections x 16 in flight", "messages_per_s", "messages/s"),
    ("echo_compress", "Echo with permessage-deflate, 1 KiB JSON-like text, 100 x 16", "messages_per_s", "messages/s"),
    ("connect", "Connection churn: open, one 20 B round trip, close; 64 workers", "connections_per_s", "connections/s"),
    ("idle", "Idle connections: server RSS per connection", "rss_per_connection_kib", "KiB/connection"),
]


def load_runs(results, scenario):
    runs = {}
    for path in sorted(glob.glob(os.path.join(results, scenario, "*.json"))):
        peer, _round, _ext = os.path.basename(path).rsplit(".", 2)
        try:
            with open(path) as f:
                data = json.loads(f.read().strip() or "{}")
        except (OSError, ValueError):
            data = {"failed": True}
        runs.setdefault(peer, []).append(data)
    return runs


def fmt_num(x, digits=0):
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, med):
    values = [v for v in values if v is not None]
    if not values or not med:
        return "-"
    lo, hi = min(values), max(values)
    pct = max(hi - med, med - lo) / med * 100
    return f"{fmt_num(lo, 1 if hi < 100 else 0)}-{fmt_num(hi, 1 if hi < 100 else 0)} (+-{pct:.0f}%)"


def lat(run, key):
    l = run.get("latency_us")
    return l.get(key) if isinstance(l, dict) else None


def scenario_table(results, scenario, metric, unit):
    runs = load_runs(results, scenario)
    if not runs:
        return None, {}
    medians = {}
    rows = []
    notes = []
    for peer in PEERS:
        pr = runs.get(peer)
        if not pr:
            continue
        good = [r for r in pr if not r.get("skipped") and not r.get("failed") and r.get(metric) is not None]
        skipped = [r.get("skipped") for r in pr if r.get("skipped")]
        failed = sum(1 for r in pr if r.get("failed"))
        if not good:
            why = skipped[0] if skipped else f"{failed} failed run(s)"
            rows.append([PEER_NAMES[peer], "n/a", "", "", "", "", "", "", why])
            continue
        vals = [r[metric] for r in good]
        med = median(vals)
        medians[peer] = med
        errors = sum(r.get("errors", 0) for r in good)
        kinds = {}
        for r in good:
            for k, v in (r.get("errors_by_kind") or {}).items():
                kinds[k] = kinds.get(k, 0) + v
        err_text = str(errors) + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")" if kinds else "")
        if failed:
            err_text += f"; {failed} run(s) failed"
        if scenario == "idle":
            held = median([r.get("held") for r in good])
            rows.append([
                PEER_NAMES[peer],
                fmt_num(med, 1),
                spread(vals, med),
                None,
                fmt_num(median([r.get("anon_per_connection_kib") for r in good]), 1),
                fmt_num(median([r.get("maps_per_connection") for r in good]), 2),
                f"{fmt_num(held)} / {fmt_num(median([r.get('connections_per_s') for r in good]))}",
                fmt_num(median([(r.get("memory_after") or {}).get("rss_kib") for r in good]) and
                        median([(r.get("memory_after") or {}).get("rss_kib") for r in good]) / 1024, 1),
                err_text,
            ])
        else:
            rows.append([
                PEER_NAMES[peer],
                fmt_num(med),
                spread(vals, med),
                None,
                fmt_num(median([r.get("mb_per_s") for r in good]), 2) if scenario.startswith("echo") else fmt_num(median([r.get("events") for r in good])),
                fmt_num(median([lat(r, "p50") for r in good]), 0),
                " / ".join(fmt_num(median([lat(r, k) for r in good]), 0) for k in ("p90", "p99", "p99_9")),
                fmt_num(median([lat(r, "max") for r in good]), 0),
                err_text,
            ])
    base = medians.get("native")
    for row in rows:
        if row[3] is None:
            peer = next(p for p in PEERS if PEER_NAMES[p] == row[0])
            if base and medians.get(peer) is not None:
                row[3] = f"{medians[peer] / base:.2f}x"
            else:
                row[3] = "-"
    if scenario == "idle":
        header = ["peer", f"median {unit}", "spread (min-max)", "ratio to native (lower is better)",
                  "anon KiB/conn", "maps/conn", "held / opened per s", "server RSS after (MiB)", "errors (all rounds)"]
    else:
        second = "MB/s (payload, each way)" if scenario.startswith("echo") else "connections in window"
        header = ["peer", f"median {unit}", "spread (min-max)", "ratio to native", second,
                  "p50 us", "p90 / p99 / p99.9 us", "max us", "errors (all rounds)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    cmd_path = os.path.join(results, scenario, "command.txt")
    if os.path.exists(cmd_path):
        with open(cmd_path) as f:
            cmd = f.read().strip()
        notes.append(f"Command (last peer shown; `--url`/`--label`/`--pid` vary): `{cmd}`")
    return "\n".join(lines + [""] + notes), medians


BROADCAST_PEERS = ["wsbox", "wsbox_per_connection", "native", "node", "websockets", "tornado"]
BROADCAST_NAMES = {
    "wsbox": "wsbox (examples/broadcast, shared fan-out)",
    "wsbox_per_connection": "wsbox, pubsub_fanout = per_connection",
    "native": "native tokio-tungstenite + tokio broadcast",
    "node": "Node ws (loop over clients)",
    "websockets": "Python websockets (broadcast())",
    "tornado": "Tornado (loop over waiters)",
}
BROADCAST_SCENARIOS = [
    ("broadcast_1k_20b", "1 publisher -> 1,000 subscribers, 20 B"),
    ("broadcast_1k_1k", "1 publisher -> 1,000 subscribers, 1 KiB"),
    ("broadcast_1k_20b_light", "1 publisher -> 1,000 subscribers, 20 B, 100 messages/s (100,000 deliveries/s offered: below saturation)"),
    ("broadcast_10k_20b", "1 publisher -> 10,000 subscribers, 20 B"),
    ("broadcast_10k_1k", "1 publisher -> 10,000 subscribers, 1 KiB"),
    ("broadcast_1k_1k_compress", "1 publisher -> 1,000 subscribers, 1 KiB JSON-like, permessage-deflate (server_no_context_takeover offered)"),
    ("broadcast_10k_1k_compress", "1 publisher -> 10,000 subscribers, 1 KiB JSON-like, permessage-deflate (server_no_context_takeover offered)"),
    ("broadcast_1k_1k_compress_takeover", "1 publisher -> 1,000 subscribers, 1 KiB JSON-like, permessage-deflate with context takeover (wsbox shared: sent uncompressed)"),
]


def ms(us):
    return None if us is None else us / 1000


def server_cpu(runs):
    """Median server CPU time per event (run.sh measures it over the whole
    load run, opening and warm-up included), or "-" for older runs."""
    values = [r["server_cpu_us_per_event"] for r in runs if r.get("server_cpu_us_per_event") is not None]
    return fmt_num(median(values), 2) if values else "-"


def broadcast_table(results, scenario):
    runs = load_runs(results, scenario)
    if not runs:
        return None, {}
    medians = {}
    rows = []
    for peer in BROADCAST_PEERS:
        pr = runs.get(peer)
        if not pr:
            continue
        good = [r for r in pr if not r.get("skipped") and not r.get("failed") and r.get("deliveries_per_s") is not None]
        skipped = [r.get("skipped") for r in pr if r.get("skipped")]
        failed = sum(1 for r in pr if r.get("failed"))
        if not good:
            why = skipped[0] if skipped else f"{failed} failed run(s)"
            rows.append([BROADCAST_NAMES[peer], "n/a", "", "", "", "", "", "", "", "", why])
            continue
        vals = [r["deliveries_per_s"] for r in good]
        med = median(vals)
        medians[peer] = med
        errors = sum(r.get("errors", 0) for r in good)
        kinds = {}
        for r in good:
            for k, v in (r.get("errors_by_kind") or {}).items():
                kinds[k] = kinds.get(k, 0) + v
        err_text = str(errors) + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")" if kinds else "")
        if failed:
            err_text += f"; {failed} run(s) failed"
        rows.append([
            BROADCAST_NAMES[peer],
            fmt_num(med),
            spread(vals, med),
            peer,
            peer,
            fmt_num(median([r.get("published") for r in good])),
            fmt_num(ms(median([lat(r, "p50") for r in good])), 1),
            " / ".join(fmt_num(ms(median([lat(r, k) for r in good])), 1) for k in ("p99", "p99_9")),
            fmt_num(median([r.get("drops") for r in good])),
            server_cpu(good),
            err_text,
        ])
    for row in rows:
        peer = row[3]
        if peer == "":
            continue
        for col, base in ((3, "native"), (4, "node")):
            b = medians.get(base)
            row[col] = f"{medians[peer] / b:.2f}x" if b and medians.get(peer) is not None else "-"
    header = ["peer", "median deliveries/s", "spread (min-max)", "ratio to native", "ratio to Node",
              "published (whole run)", "p50 ms", "p99 / p99.9 ms", "drops (median)",
              "server CPU us/delivery", "errors (all rounds)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    notes = []
    cmd_path = os.path.join(results, scenario, "command.txt")
    if os.path.exists(cmd_path):
        with open(cmd_path) as f:
            notes.append(f"Command (last peer shown; `--url`/`--label` vary): `{f.read().strip()}`")
    return "\n".join(lines + [""] + notes), medians


def broadcast_section(results, meta, timing):
    md = ["## Broadcast (`wsbox bench broadcast`)", ""]
    md.append(f"{meta.get('date', '?')}, commit `{meta.get('commit', '?')}`"
              + (" (with uncommitted changes)" if meta.get("dirty") else "")
              + f"; {meta.get('cpu', '?')}, {meta.get('nproc', '?')} cores; load average "
              f"{meta.get('loadavg_start', '?')} at the start, {timing.get('loadavg_end', '?')} at the end; "
              f"{meta.get('rounds', '?')} round(s), medians over rounds; pinning: {meta.get('pinning', '?')}.")
    md.append("")
    md.append("Protocol: every message a client sends to `/broadcast` goes to every other client "
              "(wsbox: `examples/broadcast`, subscribe on open, publish excluding self, served by "
              "`bench/broadcast.toml`; the others: `bench/peers/*broadcast*`). Every peer sets "
              "TCP_NODELAY. One publisher sends binary messages at a fixed rate (open loop); "
              "1,000 subscribers at 1,000 messages/s and 10,000 at 100/s are both offered 1M "
              "deliveries/s. Every delivery is checked (size, contents, publisher, sequence: "
              "gaps and messages still missing 5 s after publishing stopped are drops); latency "
              "is from the send timestamp in the message to the subscriber's read, in the same "
              "client process. The client is one single-threaded `wsbox bench` on the other "
              "core; against native at 1M deliveries/s it used 40-50% of that core (20 B and "
              "1 KiB, `/usr/bin/time`), so what saturates is the server's core. A server that "
              "falls behind shows it as latency (seconds: the backlog) and drops; drops depend "
              "on each server's slow-consumer policy (wsbox skips a subscriber over "
              "`max_backpressure`, the default 256 KiB here; native's channel keeps 4,096 messages; Node, "
              "websockets and Tornado buffer without bound, so their drops are what was still "
              "queued when the 5 s drain ended).")
    md.append("")
    all_medians = {}
    for scenario, title in BROADCAST_SCENARIOS:
        table, medians = broadcast_table(results, scenario)
        if table is None:
            continue
        all_medians[scenario] = medians
        md.append(f"### {title}")
        md.append("")
        md.append(table)
        md.append("")
    idle = {}
    for scenario in ("idle_subscribed", "idle_unsubscribed"):
        runs = load_runs(results, scenario).get("wsbox", [])
        good = [r for r in runs if r.get("rss_per_connection_kib") is not None]
        if good:
            idle[scenario] = (median([r["rss_per_connection_kib"] for r in good]),
                              median([r.get("anon_per_connection_kib") for r in good]),
                              median([r.get("held") for r in good]),
                              sum(r.get("errors", 0) for r in good))
    if idle:
        md.append("### Idle connections with and without a subscription (wsbox)")
        md.append("")
        md.append("`wsbox bench idle -s 0` against `examples/broadcast`: `/broadcast` subscribes "
                  "on open, `/broadcast?subscribe=0` does not (same handler, same route); server RSS "
                  "per connection, read 2 s after the last one opened.")
        md.append("")
        md.append("| connections | held | RSS KiB/conn | anon KiB/conn | errors |")
        md.append("|---|---|---|---|---|")
        for scenario, label in (("idle_unsubscribed", "not subscribed"), ("idle_subscribed", "subscribed to one topic")):
            if scenario in idle:
                rss, anon, held, err = idle[scenario]
                md.append(f"| {label} | {fmt_num(held)} | {fmt_num(rss, 2)} | {fmt_num(anon, 2)} | {err} |")
        md.append("")
    md.append("#### Broadcast targets")
    md.append("")
    md.append("| target | goal | measured | met? |")
    md.append("|---|---|---|---|")

    def ratio(scn, a, b):
        m = all_medians.get(scn, {})
        if m.get(a) and m.get(b):
            return m[a] / m[b]
        return None

    for scn in ("broadcast_10k_20b", "broadcast_10k_1k"):
        r = ratio(scn, "wsbox", "native")
        if r is not None:
            md.append(f"| {scn}: wsbox / native deliveries/s | >= 1.0x | {r:.2f}x | {'yes' if r >= 1.0 else 'no'} |")
        r = ratio(scn, "wsbox", "node")
        if r is not None:
            md.append(f"| {scn}: wsbox / Node ws deliveries/s | >= 5x | {r:.2f}x | {'yes' if r >= 5 else 'no'} |")
    for scn in ("broadcast_1k_1k_compress", "broadcast_10k_1k_compress"):
        r = ratio(scn, "wsbox", "wsbox_per_connection")
        if r is not None:
            md.append(f"| {scn}: shared / per-connection compression deliveries/s | >= 3x | {r:.2f}x | {'yes' if r >= 3 else 'no'} |")
    if "idle_subscribed" in idle and "idle_unsubscribed" in idle:
        d = idle["idle_subscribed"][0] - idle["idle_unsubscribed"][0]
        md.append(f"| idle RSS: subscribed - unsubscribed | <= 1 KiB | {d:+.2f} KiB | {'yes' if d <= 1 else 'no'} |")
    md.append("")
    return "\n".join(md)


def criterion_results(results):
    rows = []
    for est in sorted(glob.glob(os.path.join(results, "criterion", "**", "new", "estimates.json"), recursive=True)):
        d = os.path.dirname(os.path.dirname(est))
        try:
            with open(est) as f:
                e = json.load(f)
            with open(os.path.join(os.path.dirname(est), "benchmark.json")) as f:
                b = json.load(f)
        except (OSError, ValueError):
            continue
        ns = e.get("median", e.get("mean", {})).get("point_estimate")
        if ns is None:
            continue
        tp = b.get("throughput") or {}
        name = b.get("full_id") or os.path.relpath(d, os.path.join(results, "criterion"))
        rate = ""
        if "Bytes" in tp:
            rate = f"{tp['Bytes'] / ns:.2f} GB/s"
        elif "BytesDecimal" in tp:
            rate = f"{tp['BytesDecimal'] / ns:.2f} GB/s"
        elif "Elements" in tp:
            rate = f"{tp['Elements'] / ns * 1e3:,.2f} M/s"
        rows.append((name, ns, rate, tp))
    return rows


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.1f} ns"


def main():
    args = sys.argv[1:]
    broadcast_only = "--broadcast-only" in args
    args = [a for a in args if a != "--broadcast-only"]
    results, out = args[0], args[1]
    meta = {}
    timing = {}
    for name, target in (("meta.json", meta), ("timing.json", timing)):
        try:
            with open(os.path.join(results, name)) as f:
                target.update(json.load(f))
        except (OSError, ValueError):
            pass
    if broadcast_only:
        with open(out, "w") as f:
            f.write(broadcast_section(results, meta, timing) + "\n")
        return
    md = []
    md.append("# wsbox benchmarks")
    md.append("")
    md.append("Generated by `bench/run.sh` (raw results: `bench/results/`, not committed); "
              "the tables are written by `bench/report.py`, the analysis at the end is "
              "`bench/ANALYSIS.md`. Re-run with `bash bench/run.sh --out BENCHMARKS.md` (about 12 minutes "
              "once the release build exists; `bench/run.sh --help` for options).")
    md.append("")
    md.append("## Machine and method")
    md.append("")
    md.append(f"- **Date** {meta.get('date', '?')}, commit `{meta.get('commit', '?')}`"
              + (" (with uncommitted changes)" if meta.get("dirty") else ""))
    md.append(f"- **CPU** {meta.get('cpu', '?')}, {meta.get('nproc', '?')} cores; "
              f"{meta.get('mem_gib', '?')} GiB RAM; Linux {meta.get('kernel', '?')}; "
              f"vm.max_map_count {meta.get('max_map_count', '?')}; open files {meta.get('nofile', '?')}")
    md.append(f"- **Load** average {meta.get('loadavg_start', '?')} at the start, "
              f"{timing.get('loadavg_end', '?')} at the end (the benchmark's own load included). "
              "**This is a shared 2-core virtual machine**: other work on it can slow any run, so "
              "absolute numbers are noisy; ratios between peers measured in the same interleaved "
              "rounds are the meaningful part.")
    md.append(f"- **Software** {meta.get('rustc', '?')}; {meta.get('python', '?')} with Tornado "
              f"{meta.get('tornado', '?')} and websockets {meta.get('websockets', '?')}; Node "
              f"{meta.get('node', '?')} with ws {meta.get('ws', '?')}.")
    md.append(f"- **Pinning** {meta.get('pinning', '?')} (`taskset`): each server gets one core, "
              "the load generator (`wsbox bench`, tokio-tungstenite client, single-threaded) the other.")
    md.append(f"- **Rounds** {meta.get('rounds', '?')} interleaved rounds (every peer once per scenario "
              "per round, a fresh server process each run); medians over rounds; spread = min-max "
              f"and the largest deviation from the median. Each echo/connect run: {meta.get('warmup', '?')} "
              f"warm-up (excluded), then {meta.get('duration', '?')} measured. Idle: "
              f"{meta.get('idle_connections', '?')} connections, each after one 20 B round trip; "
              "RSS read from /proc/PID/status before opening and 1 s after the last one opened.")
    if timing:
        md.append(f"- **Run time** matrix {timing.get('matrix_s', '?')} s, whole script "
                  f"{timing.get('total_s', '?')} s (including the micro-benchmarks and any rebuild of changed crates).")
    md.append("- **Peers** (`bench/peers/`): wsbox = `wsbox serve --listen ADDR` (the bundled Rust "
              "echo guest; its demo route offers permessage-deflate, which only the `--compress` "
              "runs accept, so every other table is wsbox without compression); native = "
              "`native-echo`, tokio-tungstenite's canonical `read.forward(write)` echo "
              "(workspace member `wsbox-bench-native-echo`, not a default member); Tornado, "
              "Python websockets and Node ws = minimal echo scripts with their defaults "
              "(compression only with `--compress`). wsbox and native leave TCP_NODELAY off; the others keep their libraries' defaults.")
    md.append("- Latency = from just before a message is queued to when its echo is read, so with "
              "16 in flight it includes queueing behind the other 15; MB/s counts payload bytes "
              "echoed (one direction). Every echo is verified byte for byte (with a sequence "
              "number), any difference is an error.")
    skipped_path = os.path.join(results, "skipped.txt")
    if os.path.exists(skipped_path):
        with open(skipped_path) as f:
            sk = [l.strip() for l in f if l.strip()]
        if sk:
            md.append("- Skipped peers: " + "; ".join(sk))
    md.append("")

    all_medians = {}
    for scenario, title, metric, unit in SCENARIOS:
        table, medians = scenario_table(results, scenario, metric, unit)
        if table is None:
            continue
        all_medians[scenario] = medians
        md.append(f"## {title}")
        md.append("")
        md.append(table)
        md.append("")

    if any(os.path.isdir(os.path.join(results, s)) for s, _ in BROADCAST_SCENARIOS) or \
            os.path.isdir(os.path.join(results, "idle_subscribed")):
        md.append(broadcast_section(results, meta, timing))
        md.append("")

    micro = criterion_results(results)
    by_name = {name: ns for name, ns, _, _ in micro}

    md.append("## Targets: where wsbox stands")
    md.append("")
    md.append("| target | goal | measured | met? |")
    md.append("|---|---|---|---|")

    def ratio(scn, a, b):
        m = all_medians.get(scn, {})
        if m.get(a) and m.get(b):
            return m[a] / m[b]
        return None

    for scn in ("echo_20b", "echo_4k", "echo_64k"):
        r = ratio(scn, "wsbox", "native")
        if r is not None:
            md.append(f"| {scn}: wsbox / native messages/s | >= 1.0x | {r:.2f}x | {'yes' if r >= 1.0 else 'no'} |")
        r = ratio(scn, "wsbox", "tornado")
        if r is not None:
            md.append(f"| {scn}: wsbox / Tornado messages/s | >= 20x | {r:.1f}x | {'yes' if r >= 20 else 'no'} |")
    idle = all_medians.get("idle", {}).get("wsbox")
    if idle is not None:
        # The platform-core issue asks <= 40 KiB, the speed issue <= 32 KiB.
        for goal in (40, 32):
            md.append(f"| idle: RSS per live connection incl. instance | <= {goal} KiB | {idle:.1f} KiB | {'yes' if idle <= goal else 'no'} |")
    r = ratio("connect", "wsbox", "native")
    if r is not None:
        md.append(f"| connect churn: wsbox / native connections/s | >= 1.0x | {r:.2f}x | {'yes' if r >= 1.0 else 'no'} |")
    conn = all_medians.get("connect", {}).get("wsbox")
    if conn is not None:
        md.append(f"| connect churn, server on one core | >= 20,000/s | {conn:,.0f}/s | {'yes' if conn >= 20000 else 'no'} |")
    for size in ("65536", "1048576", "4096"):
        m, c = by_name.get(f"mask/apply_mask/{size}"), by_name.get(f"mask/memcpy/{size}")
        if m and c:
            pct = c / m * 100
            md.append(f"| unmasking speed vs memcpy ({int(size) // 1024} KiB) | >= 50% | {pct:.0f}% | {'yes' if pct >= 50 else 'no'} |")
    md.append("")

    if micro:
        md.append("## Micro-benchmarks (criterion)")
        md.append("")
        md.append("`cargo bench -p wsbox --bench protocol --bench instance` (run.sh uses "
                  "`--warm-up-time 0.5 --measurement-time 1.5`, pinned to CPU 1). Median time "
                  "per iteration; throughput is per iteration's bytes (or elements).")
        md.append("")
        md.append("| benchmark | median time | throughput |")
        md.append("|---|---|---|")
        for name, ns, rate, _ in micro:
            md.append(f"| `{name}` | {fmt_time(ns)} | {rate} |")
        md.append("")
        md.append("What they measure: `frame/*` the header codec alone; `mask/*` XOR unmasking "
                  "(`wsbox_protocol::frame::apply_mask`) against a plain `memcpy` of the same "
                  "buffer; `utf8/*` std's validator (which the engine's incremental validator "
                  "calls); `engine/receive` a batch of 16 masked frames through "
                  "`Connection::receive` + `next_event` (parse + unmask + UTF-8 + message); "
                  "`engine/send` one server frame queued and taken; `deflate/*` permessage-deflate "
                  "per message (a client engine compressing a JSON-like text with context "
                  "takeover and 15-bit windows; then also a server engine inflating it); `instance/*` the "
                  "bundled echo guest: pooled instantiation, a whole connection lifecycle, and "
                  "one `on-message` into wasm whose `write-message` comes back into the engine.")
        md.append("")

    analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ANALYSIS.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            md.append(f.read().rstrip())
        md.append("")
    with open(out, "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
