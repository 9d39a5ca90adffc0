#!/usr/bin/env bash
# Idle benchmark: `uplink sensor run` with nothing to send (the default sources: a heartbeat every
# 60 s, an inventory at start), against a real service on loopback. Prints the resident set after
# it settles (SECS seconds, default 15) and its peak. Goal: at most 8 MiB.
# Usage: bench/idle.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
# Setup (the same in bench/tail.sh and bench/idle.sh): a release build, a service on a free
# loopback port with workspace "bench", and a sensor installed in $tmp/sensor. Honors
# CARGO_TARGET_DIR. Defines: bin, tmp, port, pids (killed on exit), rss_kib PID, hwm_kib PID,
# cpu_secs PID.
cargo build --release --quiet -p uplink
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/uplink
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" service --data-dir "$tmp/service" --listen 127.0.0.1:0 --log-level warn >"$tmp/service.out" 2>"$tmp/service.err" &
pids+=($!)
for _ in $(seq 200); do grep -q listening "$tmp/service.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/service.out")
[ -n "$port" ] || { echo "the service did not start:"; cat "$tmp/service.err"; exit 1; }
"$bin" workspace create bench --data-dir "$tmp/service" --public-port "$port" >/dev/null
"$bin" sensor install --bundle "$tmp/service/bundles/bench.json" --config-dir "$tmp/sensor" --quiet >/dev/null

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process, in seconds.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# Events of a kind stored for the workspace.
stored() { "$bin" workspace stats bench --data-dir "$tmp/service" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['events']['by_kind'].get('$1', 0))"; }

"$bin" sensor run --config-dir "$tmp/sensor" --log-level warn 2>"$tmp/sensor.err" &
sensor_pid=$!
pids+=($sensor_pid)
# Settled: the start's heartbeat and inventory delivered, then SECS seconds of idling.
for _ in $(seq 100); do [ "$(stored inventory)" -ge 1 ] && break; sleep 0.1; done
sleep "$secs"
echo "idle sensor after ${secs} s: RSS $(rss_kib $sensor_pid) KiB, peak $(hwm_kib $sensor_pid) KiB, CPU $(cpu_secs $sensor_pid) s"
grep -E '^(Threads|VmRSS|RssAnon|RssFile)' "/proc/$sensor_pid/status" | tr -s '\t ' ' '
