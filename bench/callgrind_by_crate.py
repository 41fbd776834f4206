#!/usr/bin/env python3
"""Groups a callgrind profile's self costs by crate (or component) per event.

Usage: python3 bench/callgrind_by_crate.py SELF.txt EVENTS [--functions PREFIX]

SELF.txt is `callgrind_annotate --inclusive=no --auto=no --threshold=100`
output. Self (exclusive) costs add up to the total, so the groups partition
the instructions: wasmtime's runtime, the guest's JIT code (no symbols:
`???`), the wsbox-protocol engine, wsbox's host code, malloc, UTF-8
validation, tokio, ... With --functions PREFIX, lists the functions whose
name starts with PREFIX (e.g. `wasmtime`) instead.
"""

import collections
import re
import sys

LINE = re.compile(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$")


def rows(path):
    total = None
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if "PROGRAM TOTALS" in rest:
            total = ir
            continue
        obj = re.search(r"\[([^\]]*)\]\s*$", rest)
        obj = obj.group(1) if obj else ""
        fn = rest.split(":", 1)[1] if ":" in rest else rest
        fn = re.sub(r"\s*\[[^\]]*\]\s*$", "", fn)
        yield total, ir, obj, fn, rest


def group_of(obj, fn, rest):
    if obj == "???" or fn.startswith("0x"):
        return "guest wasm (JIT code)"
    if "libc.so" in obj:
        return "libc malloc/free" if re.search(r"malloc|free|_int_|arena|tcache", fn) else "libc memcpy/other"
    if "ld-linux" in obj or "vdso" in obj:
        return "ld.so/vdso"
    f = fn.lstrip("<")
    m = re.match(r"([A-Za-z_0-9]+)", f)
    crate = m.group(1) if m else "?"
    if crate.startswith(("wasmtime", "cranelift")):
        return "wasmtime runtime (calls, lift/lower, traps, fibers)"
    if crate in ("core", "alloc", "std"):
        if "from_utf8" in fn or "validations.rs" in rest:
            return "UTF-8 validation (std)"
        return "std/core/alloc (inlined helpers)"
    return {
        "wsbox_protocol": "wsbox-protocol engine",
        "wsbox": "wsbox host (connection loop, host imports)",
        "tokio": "tokio (scheduler, I/O)",
        "mio": "tokio (scheduler, I/O)",
        "bytes": "bytes (buffers)",
        "hyper": "hyper (HTTP/1 handshake)",
        "hyper_util": "hyper (HTTP/1 handshake)",
        "http": "http types",
        "tracing": "tracing (logs, spans)",
        "tracing_core": "tracing (logs, spans)",
        "tracing_subscriber": "tracing (logs, spans)",
        "sha1": "sha1 (accept key)",
        "regex": "regex (routes)",
        "regex_automata": "regex (routes)",
    }.get(crate, crate)


def main():
    path, events = sys.argv[1], int(sys.argv[2])
    prefix = sys.argv[sys.argv.index("--functions") + 1] if "--functions" in sys.argv else None
    agg = collections.Counter()
    total = 0
    for t, ir, obj, fn, rest in rows(path):
        if t is not None:
            total = t
        if prefix:
            if fn.lstrip("<").startswith(prefix):
                short = "::".join(re.sub(r"<.*?>", "", fn).split("::")[-2:])
                agg[short] += ir
        else:
            agg[group_of(obj, fn, rest)] += ir
    print(f"total {total:,} instructions, {events:,} events: {total / events:,.0f} per event")
    for name, ir in agg.most_common(25 if prefix else 16):
        print(f"{ir / events:9,.0f} per event {ir / total * 100:5.1f}%  {name}")


if __name__ == "__main__":
    main()
