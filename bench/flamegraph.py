#!/usr/bin/env python3
"""Folds `perf script` output into stacks and draws them as a flame graph (a static SVG).

Written for uplink's benchmark docs (docs/benchmarks.md): no JavaScript in the picture (each
frame's name, samples and share are in its <title>, which browsers show on hover), no third-party
code. The widest frames are where the CPU went; a frame's width is its samples, itself and what it
called; the bottom row is the process's threads by name.

Usage:
  perf script -i X.perf | bench/flamegraph.py --title "..." --out X.svg [--top 25]
Also prints the frames with the most self samples (the time spent in the frame itself) and each
thread's share, the figures docs/benchmarks.md quotes.
"""

import argparse
import hashlib
import html
import re
import sys
from collections import defaultdict

# A sample's header: "comm  pid/tid  time: ..." or "comm pid [cpu] time: ..."; the comm may hold
# spaces, so take what comes before the first run of digits that is followed by a space, a slash
# or a bracket.
HEADER = re.compile(r"^(\S.*?)\s+(\d+)(?:/(\d+))?\s")
# A frame: "\t    addr sym+0xoff (dso)".
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
OFFSET = re.compile(r"\+0x[0-9a-f]+$")
# Thread names that differ only by a number (tokio-runtime-w, uplink-upload-3) count as one.
THREAD_NUMBER = re.compile(r"[-_ ]?\d+$")


def simplify(sym):
    """A frame's name as the graph shows it: no offset, no hash suffix of legacy Rust names, no
    generic arguments beyond the outermost (they make names hundreds of characters long)."""
    sym = OFFSET.sub("", sym)
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    if sym == "[unknown]":
        return sym
    out, depth = [], 0
    for ch in sym:
        if ch == "<":
            depth += 1
            if depth == 2:
                out.append("<…>")
            if depth >= 2:
                continue
        elif ch == ">":
            depth -= 1
            if depth >= 1:
                continue
        elif depth >= 2:
            continue
        out.append(ch)
    return "".join(out)


def fold(lines, names=None):
    """perf script lines → {stack tuple (thread first, outermost frame next): samples}. `names`
    maps thread ids to names, for threads perf shows as ":TID" (started before it attached)."""
    names = names or {}
    stacks = defaultdict(int)
    thread, frames = None, []

    def flush():
        if thread is not None:
            stacks[(thread,) + tuple(reversed(frames))] += 1

    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            thread, frames = None, []
            continue
        if thread is None and not line[0].isspace():
            m = HEADER.match(line)
            if m:
                comm = m.group(1).strip()
                if comm.startswith(":"):
                    comm = names.get(comm[1:], "thread " + comm[1:])
                thread = THREAD_NUMBER.sub("", comm)
            else:
                thread = "?"
            continue
        m = FRAME.match(line)
        if m and thread is not None:
            sym = m.group(1)
            if sym == "[unknown]":
                sym = "[" + m.group(2).rsplit("/", 1)[-1] + "]"
            frames.append(simplify(sym))
    flush()
    return stacks


class Node:
    __slots__ = ("name", "total", "children")

    def __init__(self, name):
        self.name, self.total, self.children = name, 0, {}


def tree(stacks):
    root = Node("all")
    for stack, n in stacks.items():
        node = root
        node.total += n
        for name in stack:
            node = node.children.setdefault(name, Node(name))
            node.total += n
    return root


def color(name, depth):
    if depth == 1:
        return "rgb(180,180,200)"
    h = int(hashlib.sha1(name.encode()).hexdigest()[:6], 16)
    if "[k]" in name or name.startswith(("__x64", "entry_SYSCALL", "do_syscall", "ext4", "__")):
        return "rgb(%d,%d,%d)" % (200 + h % 55, 120 + (h >> 8) % 60, 40 + (h >> 16) % 40)
    return "rgb(%d,%d,%d)" % (225 + h % 30, 80 + (h >> 8) % 130, 30 + (h >> 16) % 40)


def svg(root, title, width=1200, row=16):
    scale = (width - 20) / max(root.total, 1)
    depth_max = 0

    # Only frames wide enough to draw count for the height.
    def depth(node, d):
        nonlocal depth_max
        if node.total * scale < 0.3:
            return
        depth_max = max(depth_max, d)
        for c in node.children.values():
            depth(c, d + 1)

    depth(root, 0)
    top = 40
    height = top + (depth_max + 1) * row + 10
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="monospace" font-size="11">'
        % (width, height),
        '<rect width="100%" height="100%" fill="#f8f8f0"/>',
        '<text x="10" y="20" font-size="15">%s</text>' % html.escape(title),
        '<text x="10" y="34" fill="#555">%d samples; width = samples of a frame and what it called; hover a frame for its share</text>'
        % root.total,
    ]

    def draw(node, x, d):
        w = node.total * scale
        if w < 0.3:
            return
        y = height - 10 - (d + 1) * row
        share = 100.0 * node.total / max(root.total, 1)
        label = "%s (%d samples, %.1f%%)" % (node.name, node.total, share)
        parts.append(
            '<g><title>%s</title><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="1"/>'
            % (html.escape(label), x, y, w, row - 1, color(node.name, d))
        )
        chars = int((w - 4) / 6.6)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[: chars - 1] + "…"
            parts.append('<text x="%.1f" y="%d">%s</text>' % (x + 2, y + row - 4, html.escape(text)))
        parts.append("</g>")
        cx = x
        for c in sorted(node.children.values(), key=lambda c: c.name):
            draw(c, cx, d + 1)
            cx += c.total * scale

    draw(root, 10, 0)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--title", default="CPU flame graph")
    ap.add_argument("--out", required=True, help="the SVG to write")
    ap.add_argument("--threads", help="a file of lines 'TID NAME' naming the threads perf could not")
    ap.add_argument("--top", type=int, default=25, help="how many frames of most self samples to print")
    args = ap.parse_args()
    names = {}
    if args.threads:
        with open(args.threads) as f:
            for line in f:
                tid, _, name = line.strip().partition(" ")
                if name:
                    names[tid] = name
    stacks = fold(sys.stdin, names)
    if not stacks:
        sys.exit("flamegraph.py: no samples in the input (is it `perf script` output of a perf.data with -g?)")
    root = tree(stacks)
    with open(args.out, "w") as f:
        f.write(svg(root, args.title))
    total = root.total
    threads = sorted(root.children.values(), key=lambda c: -c.total)
    print("%d samples; by thread: %s" % (total, ", ".join("%s %.1f%%" % (t.name, 100.0 * t.total / total) for t in threads)))
    selfs = defaultdict(int)
    for stack, n in stacks.items():
        selfs[stack[-1] if len(stack) > 1 else stack[0] + " (no frames)"] += n
    print("self samples, most first:")
    for name, n in sorted(selfs.items(), key=lambda kv: -kv[1])[: args.top]:
        print("  %5.1f%%  %s" % (100.0 * n / total, name))


if __name__ == "__main__":
    main()
