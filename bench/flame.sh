#!/usr/bin/env bash
# Where the CPU goes: flame graphs of the uplink sensor and service during the side-by-side run
# (bench/vs-fluentbit.sh with PERF=DIR: one run, N lines, perf recording both processes with
# DWARF unwinding at 499 Hz), drawn by bench/flamegraph.py (a static SVG each; hover a frame for
# its share) into OUT (default docs/flame), with each process's share by thread and the frames of
# most self time printed. The run's own figures are printed too but perf slows it: measure speed
# without PERF.
# Knobs: BIN, SHAPE, PARSE, COMPRESS, INFLIGHT as bench/vs-fluentbit.sh.
# Usage: bench/flame.sh [N] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300000}
out=${2:-docs/flame}
command -v perf >/dev/null || { echo "bench/flame.sh: perf is missing (apt-get install linux-perf)"; exit 2; }
rec=$(mktemp -d)
trap 'rm -rf "$rec"' EXIT
PERF=$rec bench/vs-fluentbit.sh "$n" 1
mkdir -p "$out"
label="${SHAPE:-298} B lines${PARSE:+, PARSE=$PARSE}, $n lines, $(date -u +%Y-%m-%d)"
for who in sensor service; do
  [ -s "$rec/$who.perf" ] || { echo "bench/flame.sh: perf recorded nothing of the $who" >&2; exit 1; }
  echo "== $who"
  perf script -i "$rec/$who.perf" 2>/dev/null |
    bench/flamegraph.py --threads "$rec/$who.threads" --title "uplink $who: CPU while tailing $label (bench/flame.sh)" --out "$out/$who.svg"
done
echo "wrote $out/sensor.svg and $out/service.svg"
