#!/usr/bin/env bash
# Fleet health with a big backlog: a sensor that comes back with N queued events (default
# 1,000,000) must be `online`, with its report and its backlog shown, within one heartbeat
# interval — its report goes first on the connection, before the backlog (docs/fleet.md). Prints
# how long until `uplink fleet list` shows it online with the backlog, and how long the backlog
# took to drain. Everything on loopback, in a temporary directory.
#
# Usage: bench/fleet-backlog.sh [N] [HEARTBEAT_SECS]   (default 1000000 60; BIN=path/to/uplink to
# skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
hb=${2:-60}
for p in python3 curl; do command -v "$p" >/dev/null || { echo "bench/fleet-backlog.sh: $p is missing (apt-get install $p)"; exit 2; }; done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p uplink
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/uplink
fi
tmp=$(mktemp -d)
svc=""
run=""
cleanup() {
  [ -n "$run" ] && kill "$run" 2>/dev/null || true
  [ -n "$svc" ] && kill "$svc" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/data"
"$BIN" service --data-dir "$tmp/data" --listen 127.0.0.1:0 --fleet-evaluate-every 1s \
  >"$tmp/svc.out" 2>"$tmp/svc.log" &
svc=$!
for _ in $(seq 100); do grep -q listening "$tmp/svc.out" && break; sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/svc.out" | head -1)
[ -n "$port" ] || { echo "the service did not start:"; cat "$tmp/svc.log"; exit 1; }
"$BIN" workspace create bench --data-dir "$tmp/data" --public-port "$port" --json >"$tmp/ws.json"
bundle=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bundle_path"])' "$tmp/ws.json")
"$BIN" sensor install --bundle "$bundle" --config-dir "$tmp/sensor" --quiet
sed -i "s/heartbeat_secs = 60/heartbeat_secs = $hb/" "$tmp/sensor/sensor.toml"
id=$("$BIN" sensor status --config-dir "$tmp/sensor" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sensor_id"])')
echo "queueing $n events..."
python3 -c "
import sys
w = sys.stdout.write
for i in range($n): w('{\"n\":%d}\n' % i)
" | "$BIN" sensor send --config-dir "$tmp/sensor"

fleet() {
  "$BIN" fleet list bench --data-dir "$tmp/data" --json | python3 -c '
import json, sys
for s in json.load(sys.stdin)["sensors"]:
    if s["sensor_id"] == sys.argv[1]:
        print(s["state"], s["queue"]["events"] if s["queue"]["events"] is not None else -1)
' "$id"
}
start=$(date +%s.%N)
"$BIN" sensor run --config-dir "$tmp/sensor" --log-level warn 2>"$tmp/run.log" &
run=$!
while :; do
  read -r state queued < <(fleet)
  if [ "$state" = online ] && [ "$queued" -ge "$n" ]; then break; fi
  sleep 0.2
done
online=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
echo "online with its backlog ($queued queued) after ${online} s (heartbeat interval ${hb} s)"
while [ "$("$BIN" sensor status --config-dir "$tmp/sensor" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue"]["events"])')" != 0 ]; do
  sleep 1
done
drained=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
echo "backlog drained after ${drained} s"
python3 -c "import sys; sys.exit(0 if $online < $hb else 1)" || { echo "FAIL: not online within one interval"; exit 1; }
