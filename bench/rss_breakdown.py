#!/usr/bin/env python3
"""Where a process's resident memory is: /proc/PID/smaps grouped into regions.

Usage: python3 bench/rss_breakdown.py PID [--top N] [--json]

Adjacent anonymous mappings are merged into one region (the wasm pooling
allocator reserves one huge range for all linear memories and one for all
fiber stacks, then changes protections slot by slot, which splits them into
thousands of VMAs). Each region is listed with its virtual size, its RSS and
its number of VMAs, largest RSS first; named mappings (the binary, libc,
[heap], [stack]) are listed by name. Compare two snapshots (before/after
opening N connections) to attribute the per-connection RSS.
"""

import json
import sys


def parse(pid):
    regions = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                name = parts[5] if len(parts) > 5 else ""
                cur = {"start": start, "end": end, "name": name, "rss": 0, "perms": parts[1]}
                regions.append(cur)
            elif parts[0] == "Rss:" and cur is not None:
                cur["rss"] = int(parts[1])
    return regions


def group(vmas):
    groups = []
    for v in vmas:
        g = groups[-1] if groups else None
        if v["name"] == "" and g and g["name"] == "" and g["end"] == v["start"]:
            g["end"] = v["end"]
            g["rss"] += v["rss"]
            g["vmas"] += 1
        else:
            groups.append({"start": v["start"], "end": v["end"], "name": v["name"], "rss": v["rss"], "vmas": 1})
    by_name = {}
    out = []
    for g in groups:
        if g["name"]:
            n = by_name.setdefault(g["name"], {"name": g["name"], "size": 0, "rss": 0, "vmas": 0})
            n["size"] += g["end"] - g["start"]
            n["rss"] += g["rss"]
            n["vmas"] += g["vmas"]
        else:
            out.append({"name": f"anon@{g['start']:#x}", "size": g["end"] - g["start"], "rss": g["rss"], "vmas": g["vmas"]})
    out.extend(by_name.values())
    out.sort(key=lambda r: -r["rss"])
    return out


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.0f} PiB"


def main():
    pid = int(sys.argv[1])
    top = 12
    if "--top" in sys.argv:
        top = int(sys.argv[sys.argv.index("--top") + 1])
    regions = group(parse(pid))
    if "--json" in sys.argv:
        print(json.dumps(regions[:top]))
        return
    total = sum(r["rss"] for r in regions)
    print(f"total RSS {total} KiB in {sum(r['vmas'] for r in regions)} VMAs")
    print(f"{'region':<40} {'virtual':>10} {'RSS KiB':>10} {'VMAs':>7}")
    for r in regions[:top]:
        print(f"{r['name'][:40]:<40} {human(r['size']):>10} {r['rss']:>10} {r['vmas']:>7}")


if __name__ == "__main__":
    main()
