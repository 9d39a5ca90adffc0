#!/usr/bin/env bash
# The console's sensors page with N sensors in the store (default 10,000): the server's time to
# answer GET /sensors (first page, and a filtered, sorted one) for a signed-in admin, measured by
# curl as the time from the request sent to the first byte back, on loopback. Target: under
# 300 ms (issue #25). The sensors are one real enrolled sensor (with its report) copied N-1 times
# in the SQLite store while the service is stopped: the page reads them as it reads real ones.
#
# Usage: bench/console.sh [N] [ROUNDS]   (default 10000 5; BIN=path/to/uplink skips the release
# build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
rounds=${2:-5}
for p in python3 curl; do command -v "$p" >/dev/null || { echo "bench/console.sh: $p is missing (apt-get install $p)"; exit 2; }; done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p uplink
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/uplink
fi
tmp=$(mktemp -d)
svc=""
cleanup() {
  [ -n "$svc" ] && kill "$svc" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
start_service() {
  "$BIN" service --data-dir "$tmp/data" --listen "127.0.0.1:${1:-0}" --log-level warn >"$tmp/svc.out" 2>"$tmp/svc.log" &
  svc=$!
  for _ in $(seq 200); do grep -q listening "$tmp/svc.out" 2>/dev/null && break; sleep 0.05; done
  port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/svc.out" | head -1)
  [ -n "$port" ] || { echo "the service did not start:"; cat "$tmp/svc.log"; exit 1; }
}
mkdir -p "$tmp/data"
start_service
"$BIN" workspace create bench --data-dir "$tmp/data" --public-port "$port" >/dev/null
"$BIN" sensor install --bundle "$tmp/data/bundles/bench.json" --config-dir "$tmp/sensor" --quiet >/dev/null
"$BIN" sensor run --once --config-dir "$tmp/sensor" --log-level warn >/dev/null 2>&1
kill "$svc"; wait "$svc" 2>/dev/null || true; svc=""
echo "copying the sensor to $n sensors..."
python3 - "$tmp/data/uplink.db" "$n" <<'PY'
import sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
s = c.execute("SELECT sensor_id, workspace, cert_sha256, enrolled_at, last_seen FROM sensors").fetchone()
f = c.execute("SELECT body, sensor_time, received_at, state, health, evaluated_at FROM fleet_sensors WHERE sensor_id = ?", (s[0],)).fetchone()
with c:
    for i in range(1, n):
        sid = "%032x" % (0xbe4c400000000000 + i)
        c.execute("INSERT INTO sensors (sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen, key_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (sid, s[1], "bench-%05d" % i, s[2], s[3], s[4], "%064x" % i))
        if f:
            c.execute("INSERT INTO fleet_sensors (sensor_id, workspace, body, sensor_time, received_at, state, health, evaluated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (sid, s[1]) + tuple(f))
PY
start_service "$port"
printf '%s\n' 'bench-console-password' | "$BIN" admin user add bench admin --role admin --data-dir "$tmp/data" >/dev/null
host="bench.uplink.localhost"
ca="$tmp/ca.pem"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_pem"])' "$tmp/data/bundles/bench.json" >"$ca"
c() { curl -sS --resolve "$host:$port:127.0.0.1" --cacert "$ca" -b "$tmp/jar" -c "$tmp/jar" "$@"; }
csrf=$(c "https://$host:$port/login" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
c -o /dev/null --data-urlencode "csrf=$csrf" --data-urlencode username=admin --data-urlencode password=bench-console-password "https://$host:$port/login"
rows=$(c "https://$host:$port/sensors?per_page=1" | grep -o '<p id="count"[^<]*' | sed 's/.*>//')
echo "the sensors page lists: $rows"
measure() {
  local path=$1 best="" all=""
  for _ in $(seq "$rounds"); do
    t=$(c -o /dev/null -w '%{time_pretransfer} %{time_starttransfer}\n' "https://$host:$port$path" | awk '{printf "%.1f", ($2 - $1) * 1000}')
    all="$all $t"
  done
  median=$(printf '%s\n' $all | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-60s median %7s ms  (rounds:%s)\n' "$path" "$median" "$all"
}
measure "/sensors"
measure "/sensors?state=online&sort=last_seen&dir=desc&q=bench-0"
measure "/sensors.csv"
echo "target: under 300 ms of server time for /sensors with 10,000 sensors"
