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
# A release build (the profile the tests use; bench/idle.sh measures the shipped `dist` one).
cargo build --release --quiet --all-features -p uplink
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/uplink
. bench/setup.sh

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
