#!/usr/bin/env python3
"""Who owns a process's CPU: each `perf` sample goes to the crate of the nearest frame, from
the leaf up, that is not std/core/alloc or libc glue (so an allocation or a sort counts for the
code that asked for it); a sample in the kernel stays the kernel's. Prints the shares per
thread and, with --ours THREAD, our own functions' shares of that thread.

    perf record -F 499 --call-graph dwarf,16384 -p "$PID" -o perf.data -- sleep 3
    perf script -i perf.data -F comm,tid,ip,sym,dso | scripts/perf_owners.py [--ours vitalwatch-mqtt]
"""

import argparse
import collections
import re
import sys

GLUE = ("core::", "alloc::", "std::", "hashbrown::")
SQLITE_C = ("sqlite3", "wal", "pcache", "vdbe", "pager", "btree", "moveto", "balance")
OURS = ("vitalwatch", "vitalwatch_core")
NAMES = {
    "rustls": "rustls + ring (TLS)",
    "ring": "rustls + ring (TLS)",
    "tokio": "tokio",
    "rusqlite": "SQLite (rusqlite + C)",
    "sqlite": "SQLite (rusqlite + C)",
    "kernel": "kernel",
    "serde_json": "serde_json",
    "chrono": "chrono",
}


def crate_of(sym, dso):
    """The crate a frame belongs to, or None for glue (std, libc, generic shims)."""
    if dso.startswith("[kernel"):
        return "kernel"
    if "libc.so" in dso or "libm.so" in dso or "ld-linux" in dso:
        return None
    name = sym.lstrip("<&* ")
    if name.startswith(SQLITE_C):
        return "sqlite"
    if name.startswith(GLUE):
        return None
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    if not match or match[1] in ("S", "F", "T", "Fut", "Svc", "U"):
        return None
    return match[1]


def owner(crate):
    if crate is None:
        return "unattributed (libc/std only)"
    if crate in OURS:
        return "ours"
    if crate.startswith("ntex"):
        return "ntex (MQTT, I/O, service, runtime)"
    return NAMES.get(crate, "other: " + crate)


def samples(lines):
    """Yields (thread name, [(symbol, dso), ...] leaf first) per sample."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith((" ", "\t")):
            if comm is not None:
                yield comm, frames
            comm, frames = line.split()[0], []
        else:
            match = re.match(r"\s+[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
            if match:
                frames.append((match[1], match[2]))
    if comm is not None:
        yield comm, frames


def first_owned(frames):
    for idx, (sym, dso) in enumerate(frames):
        crate = crate_of(sym, dso)
        if crate:
            return idx, crate
    return None, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", metavar="THREAD", help="break our share of THREAD down by function")
    args = parser.parse_args()
    by_owner = collections.Counter()
    by_thread = collections.Counter()
    by_function = collections.Counter()
    for comm, frames in samples(sys.stdin):
        idx, crate = first_owned(frames)
        by_owner[(comm, owner(crate))] += 1
        by_thread[comm] += 1
        if comm == args.ours and crate in OURS:
            by_function[re.sub(r"::\{\{closure\}\}", "", frames[idx][0])[:100]] += 1
    total = sum(by_thread.values()) or 1
    for comm, count in by_thread.most_common(3):
        print(f"{comm}: {100 * count / total:.1f}% of samples")
        for (thread, name), n in by_owner.most_common():
            if thread == comm and 100 * n / total >= 0.2:
                print(f"   {name:38s} {100 * n / total:5.1f}% of all {100 * n / count:4.0f}% of thread")
    if args.ours:
        count = by_thread[args.ours] or 1
        print(f"our functions, share of {args.ours}:")
        for name, n in by_function.most_common(15):
            print(f"   {100 * n / count:5.1f}%  {name}")


if __name__ == "__main__":
    main()
