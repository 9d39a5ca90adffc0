#!/usr/bin/env bash
# The sensor's peak memory and CPU per event, tailing or draining, against a real service on
# loopback (direct, no proxy; SQLite):
#   tail  : `sensor run` tails a file of N lines of 298 B until the service has stored all N
#   drain : `sensor send` queues N events, then `sensor run --once` uploads the backlog
# Prints events/s, the sensor's CPU µs per event, its peak RSS (VmHWM from /usr/bin/time) with
# the anonymous and file-backed peaks (sampled every 100 ms: the binary's code pages are the
# file-backed part), and the service's CPU µs per event. Counted by kind (the sensor's own
# heartbeat and inventory are not counted). Figures, not pass/fail.
# WRAP="valgrind --tool=massif" (or dhat) runs the sensor under a profiler.
# Usage: bench/sensor-mem.sh [tail|drain] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-tail}
n=${2:-1000000}
case "$mode" in tail | drain) ;; *) echo "usage: bench/sensor-mem.sh [tail|drain] [N]" >&2; exit 2 ;; esac
command -v /usr/bin/time >/dev/null || { echo "bench/sensor-mem.sh: /usr/bin/time is missing (apt-get install time)"; exit 2; }
# BIN=path measures that binary instead (e.g. one saved before a change, in the same conditions).
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --all-features -p uplink
fi
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/uplink}
tmp=$(mktemp -d)
chmod 777 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
# Peak RssAnon and RssFile of a process, sampled until it exits, into FILE.
sample() {
  local pid=$1 out=$2 ma=0 mf=0 a f
  while [ -e "/proc/$pid/status" ]; do
    read -r a f < <(awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a+0, f+0}' "/proc/$pid/status" 2>/dev/null || echo 0 0)
    [ "${a:-0}" -gt "$ma" ] && ma=$a
    [ "${f:-0}" -gt "$mf" ] && mf=$f
    echo "$ma $mf" >"$out"
    sleep 0.1
  done
}
stored() {
  "$bin" workspace stats bench --data-dir "$tmp/service" --json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['events']['by_kind'].get('$1', 0))"
}

# SHAPE=long: lines of 2,000 B instead of 298 (SHAPE=N: lines of N bytes); SHAPE=escaped: the
# message full of \" \\ \t \u escapes, SHAPE=short: ~80 B (both as bench/vs-fluentbit.sh makes them).
# A long-line drain of 1,000,000 events (2 GB) does not fit the default queue: drain fewer.
size=${SHAPE:-298}
[ "$size" = long ] && size=2000
python3 - "$n" "$size" >"$tmp/input.log" <<'PY'
import json, sys
n, shape = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
for i in range(n):
    head = '{"host":"dc01.contoso.com","user":"CONTOSO\\\\user%d","src_ip":"10.1.%d.%d","event_id":4624,"n":%d,"msg":"' % (i % 5000, (i >> 8) & 255, i & 255, i)
    if shape == "escaped":
        out.write(head + json.dumps('say "hi"\\path\tq\u0001 ' * 8)[1:-1] + '"}\n')
    elif shape == "short":
        out.write('{"n":%d,"msg":"%s"}\n' % (i, "x" * 60))
    else:
        out.write(head + "x" * (int(shape) - len(head) - 3) + '"}\n')
PY
mkdir -p "$tmp/service"
"$bin" service --data-dir "$tmp/service" --listen 127.0.0.1:0 --log-level warn >"$tmp/service.out" 2>"$tmp/service.err" &
spid=$!
pids+=($spid)
for _ in $(seq 200); do grep -q listening "$tmp/service.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/service.out")
"$bin" workspace create bench --data-dir "$tmp/service" --public-port "$port" >/dev/null
"$bin" sensor install --bundle "$tmp/service/bundles/bench.json" --config-dir "$tmp/sensor" --quiet >/dev/null
# INFLIGHT=N: batches in flight at once (sensor.toml's upload.inflight; default: the sensor's).
[ -z "${INFLIGHT:-}" ] || sed -i "s/^batch_events = \([0-9]*\)$/batch_events = \1\ninflight = $INFLIGHT/" "$tmp/sensor/sensor.toml"
# BATCH_EVENTS=N: most events per batch (sensor.toml's upload.batch_events; default: the sensor's).
[ -z "${BATCH_EVENTS:-}" ] || sed -i "s/^batch_events = [0-9]*$/batch_events = $BATCH_EVENTS/" "$tmp/sensor/sensor.toml"

if [ "$mode" = tail ]; then
  kind=log
  printf '\n[[sources.files]]\npaths = ["%s"]\n' "$tmp/input.log" >>"$tmp/sensor/sensor.toml"
  before=$(ticks "$spid")
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$tmp/sensor.time" ${WRAP:-} "$bin" sensor run --config-dir "$tmp/sensor" --log-level warn 2>"$tmp/sensor.err" &
  tpid=$!
  for _ in $(seq 100); do rpid=$(pgrep -P "$tpid" | head -1) && break; sleep 0.02; done
  sample "$rpid" "$tmp/split" &
  deadline=$((SECONDS + 600))
  # The sensor's status.json first (a file read; `stored` starts a process opening the store).
  delivered() { local d; d=$(sed -n 's/.*"delivered": *\([0-9]*\).*/\1/p' "$tmp/sensor/status.json" 2>/dev/null || true); echo "${d:-0}"; }
  while [ "$(delivered)" -lt "$n" ]; do
    [ $SECONDS -lt $deadline ] || break
    sleep 0.05
  done
  while [ "$(stored log)" -lt "$n" ]; do
    [ $SECONDS -lt $deadline ] || { echo "only $(stored log) of $n lines within 600 s" >&2; break; }
    sleep 0.2
  done
  end=$(date +%s.%N)
  after=$(ticks "$spid")
  pkill -TERM -P "$tpid" || true
  wait "$tpid" || true
else
  kind=event
  "$bin" sensor send --config-dir "$tmp/sensor" <"$tmp/input.log"
  before=$(ticks "$spid")
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$tmp/sensor.time" ${WRAP:-} "$bin" sensor run --once --timeout 600 --config-dir "$tmp/sensor" --log-level warn >/dev/null 2>"$tmp/sensor.err" &
  tpid=$!
  for _ in $(seq 100); do rpid=$(pgrep -P "$tpid" | head -1) && break; sleep 0.02; done
  sample "$rpid" "$tmp/split" &
  wait "$tpid"
  end=$(date +%s.%N)
  after=$(ticks "$spid")
fi
sleep 0.2
got=$(stored "$kind")
read -r u s m <"$tmp/sensor.time"
read -r ma mf <"$tmp/split" || { ma=0; mf=0; }
size=$size python3 - "$mode" "$n" "$got" "$start" "$end" "$u" "$s" "$m" "$ma" "$mf" "$before" "$after" "$tck" <<'PY'
import sys
import os
mode = sys.argv[1]
size = os.environ['size']
n, got, st, en, u, s, m, ma, mf, b, a, t = map(float, sys.argv[2:])
print(f"sensor {mode}, {n:,.0f} events of {size + ' B' if size.isdigit() else size + ' lines'} -> service (SQLite), stored {got:,.0f}{'' if got == n else ' MISSING ' + str(int(n - got))}")
print(f"  {got/(en-st):,.0f} events/s   sensor {(u+s)*1e6/got:.2f} CPU us/event   peak RSS {m/1024:.1f} MiB"
      f" (sampled: anonymous {ma/1024:.1f} + file-backed {mf/1024:.1f})   service {(a-b)/t*1e6/got:.2f} CPU us/event")
PY
