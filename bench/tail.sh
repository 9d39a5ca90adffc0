#!/usr/bin/env bash
# File-tailing benchmark: a log file growing at RATE lines/s (default 100,000) for SECS seconds
# (default 10) while `uplink sensor run` tails it and uploads to a real service on loopback.
# Prints the lines written, the events/s achieved end to end (first line written → last line
# stored), the sensor's CPU seconds and its peak RSS. Figures, not a pass/fail.
# Usage: bench/tail.sh [SECS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rate=${2:-100000}
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

mkdir -p "$tmp/logs"
: >"$tmp/logs/app.log"
cat >>"$tmp/sensor/sensor.toml" <<CONF

[[sources.files]]
paths = ["$tmp/logs/app.log"]
CONF
"$bin" sensor run --config-dir "$tmp/sensor" --log-level warn 2>"$tmp/sensor.err" &
sensor_pid=$!
pids+=($sensor_pid)

start=$(date +%s.%N)
# The writer: RATE lines/s in 10 ms ticks, ~120 bytes a line (an access-log line's size).
python3 - "$tmp/logs/app.log" "$secs" "$rate" <<'PY'
import sys, time
path, secs, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per_tick = rate // 100
pad = "x" * 80
n = 0
t0 = time.monotonic()
with open(path, "a", buffering=1 << 20) as f:
    for tick in range(secs * 100):
        f.write("".join(f"{n + i} GET /index.html 200 {pad}\n" for i in range(per_tick)))
        f.flush()
        n += per_tick
        delay = t0 + (tick + 1) / 100 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
late = time.monotonic() - t0 - secs
print(f"writer: {n} lines in {secs} s" + (f" ({late:.2f} s late: the writer could not keep the rate)" if late > 0.2 else ""))
PY
total=$((secs * rate))
deadline=$((SECONDS + 300))
while [ "$(stored log)" -lt "$total" ]; do
  [ $SECONDS -lt $deadline ] || { echo "not all lines stored within 300 s: $(stored log) of $total"; break; }
  sleep 0.2
done
end=$(date +%s.%N)
got=$(stored log)
python3 - "$start" "$end" "$got" "$total" "$(cpu_secs $sensor_pid)" "$(hwm_kib $sensor_pid)" <<'PY'
import sys
start, end, got, total, cpu, hwm = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
el = end - start
print(f"lines written {total}, stored {got}")
print(f"end to end: {el:.1f} s, {got / el:,.0f} events/s")
print(f"sensor CPU: {cpu:.2f} s ({cpu / max(got, 1) * 1e6:.1f} µs per line)")
print(f"sensor peak RSS: {hwm / 1024:.1f} MiB")
PY
