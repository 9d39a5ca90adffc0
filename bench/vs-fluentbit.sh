#!/usr/bin/env bash
# Side by side with the peer: Fluent Bit 5.1.1 (../shared/peers/fluent-bit) and the uplink sensor
# each tail the same file of N lines (default 1,000,000) of 298 bytes and ship it through the
# same Squid (CONNECT) over HTTPS, in the same run:
#   fluent-bit (memory buffering)      tail -> out_http json_lines -> Squid -> receiver.py (counts)
#   fluent-bit (filesystem, sync full) the same with durable buffering
#   uplink sensor run                  file source -> durable queue -> Squid -> uplink service -> SQLite
# receiver.py stores nothing; the uplink service commits every event, so it does strictly more.
# Prints per shipper: events/s (lines / (last line received - start)), CPU µs per event (user +
# sys of the shipper's process), peak RSS; the uplink service's CPU µs per event; and the ratios
# uplink / Fluent Bit. Figures, not pass/fail. Counted by kind: the sensor's own heartbeat and
# inventory are not lines of the file.
# PARSE=json: both sides parse each line as JSON — Fluent Bit with `Parser json` (a parsers file
# in the run's temp dir), uplink with `format = "json"` (each line shipped as the event's `data`).
# PERF=DIR: also record where uplink's two processes spend their CPU (bench/flame.sh draws it).
# WARM=0: do not read the file whole before each shipper's run (see warm()).
# Usage: bench/vs-fluentbit.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
runs=${2:-1}
case "${PARSE:-}" in
  ""|text) parse="lines as text" ;;
  json) parse="lines parsed as JSON (Fluent Bit Parser json, uplink format = \"json\")" ;;
  *) echo "bench/vs-fluentbit.sh: PARSE=$PARSE: one of text (default), json"; exit 2 ;;
esac
peer=$(cd .. && pwd)/shared/peers/fluent-bit
[ -x "$peer/fluent-bit" ] || { echo "bench/vs-fluentbit.sh: no Fluent Bit at $peer (../shared/peers/fluent-bit)"; exit 2; }
for p in squid openssl python3 curl /usr/bin/time; do command -v "$p" >/dev/null || { echo "bench/vs-fluentbit.sh: $p is missing (apt-get install squid openssl python3 curl time)"; exit 2; }; done

# --all-features: the feature set CI and the tests build (so the build reuses their cache);
# it links GSSAPI as the package does.
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tck=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }

# The input: N NDJSON lines; SHAPE picks them: 298 (default: exactly 298 bytes, newline
# included), short (~80 B), long (~2,000 B), escaped (a message full of \" \\ \t \u escapes),
# nonascii (UTF-8 text: accents, CJK, emoji; ~298 B).
python3 - "$n" "${SHAPE:-298}" >"$tmp/input.log" <<'PY'
import json, sys
n, shape = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
for i in range(n):
    head = '{"host":"dc01.contoso.com","user":"CONTOSO\\\\user%d","src_ip":"10.1.%d.%d","event_id":4624,"n":%d,"msg":"' % (i % 5000, (i >> 8) & 255, i & 255, i)
    if shape == "298":
        out.write(head + "x" * (298 - len(head) - 3) + '"}\n')
    elif shape == "short":
        out.write('{"n":%d,"msg":"%s"}\n' % (i, "x" * 60))
    elif shape == "long":
        out.write(head + "x" * (2000 - len(head) - 3) + '"}\n')
    elif shape == "escaped":
        out.write(head + json.dumps('say "hi"\\path\tq\u0001 ' * 8)[1:-1] + '"}\n')
    elif shape == "nonascii":
        out.write(head + "Übergröße café 日本語のログ 🚀 " * 4 + '"}\n')
    else:
        sys.exit(f"SHAPE={shape}: one of 298, short, long, escaped, nonascii")
PY
# Squid, CONNECT only, the names of both receivers mapped to loopback.
sport=$(free_port)
printf '127.0.0.1 benchsensorapi.uplink.localhost\n127.0.0.1 localhost\n' >"$tmp/hosts"
cat >"$tmp/squid.conf" <<CONF
http_port 127.0.0.1:$sport
pid_filename $tmp/squid.pid
cache_log $tmp/cache.log
access_log none
cache deny all
cache_mem 8 MB
hosts_file $tmp/hosts
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
acl CONNECT method CONNECT
http_access allow CONNECT
http_access deny all
CONF
squid -N -n "uplinkbench$sport" -f "$tmp/squid.conf" 2>"$tmp/squid.err" &
pids+=($!)
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && break; sleep 0.05; done

# Fluent Bit's receiver: a certificate for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$tmp/recv.key" -out "$tmp/recv.pem" 2>/dev/null

# One Fluent Bit run: prints "events_per_s cpu_us peak_mib".
fluentbit() {
  local mode=$1 rport conf store
  rport=$(free_port)
  python3 "$peer/receiver.py" "$rport" "$tmp/recv.pem" "$tmp/recv.key" >"$tmp/recv.out" 2>&1 &
  local rpid=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.05; done
  conf="$tmp/fb-$mode.conf"
  sed -e "s|@FILE@|$tmp/input.log|" -e "s|@PORT@|$rport|" -e "s|@CA@|$tmp/recv.pem|" "$peer/tail-http.conf" >"$conf"
  # COMPRESS=gzip: Fluent Bit compresses its requests too (uplink's sensor always sends zstd).
  if [ "${COMPRESS:-}" = gzip ]; then
    sed -i 's/^    Format json_lines$/    Format json_lines\n    compress gzip/' "$conf"
  fi
  # PARSE=json: each line parsed into the record (Fluent Bit's json parser, from a parsers file).
  if [ "${PARSE:-}" = json ]; then
    printf '[PARSER]\n    Name json\n    Format json\n' >"$tmp/parsers.conf"
    sed -i -e "s|^\[SERVICE\]\$|[SERVICE]\n    Parsers_File $tmp/parsers.conf|" \
      -e 's/^    Name tail$/    Name tail\n    Parser json/' "$conf"
  fi
  if [ "$mode" = filesystem ]; then
    store="$tmp/fb-store"; rm -rf "$store"; mkdir -p "$store"
    python3 - "$conf" "$store" <<'PY'
import sys
p, store = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("\n[SERVICE]\n", f"\n[SERVICE]\n    storage.path {store}\n    storage.sync full\n", 1)
s = s.replace("    Name tail\n", "    Name tail\n    storage.type filesystem\n", 1)
open(p, "w").write(s)
PY
  fi
  local start end
  start=$(now)
  HTTP_PROXY="http://127.0.0.1:$sport" /usr/bin/time -f "%U %S %M" -o "$tmp/fb.time" "$peer/fluent-bit" -c "$conf" >"$tmp/fb.out" 2>&1 &
  local tpid=$!
  local got=0 deadline=$((SECONDS + 600))
  while :; do
    # curl, not a Python process per poll: the pollers must not take the CPU being measured.
    got=$(curl -sk --max-time 5 "https://127.0.0.1:$rport/stats" | sed -n 's/.*"lines": *\([0-9]*\).*/\1/p')
    got=${got:-0}
    [ "$got" -ge "$n" ] && break
    [ $SECONDS -lt $deadline ] || { echo "fluent-bit ($mode): only $got of $n lines within 600 s" >&2; break; }
    sleep 0.1
  done
  end=$(now)
  pkill -TERM -P "$tpid" fluent-bit 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
  kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true
  read -r u s m <"$tmp/fb.time"
  python3 -c "import sys; n,st,en,u,s,m=map(float,sys.argv[1:]); print(f'{n/(en-st):.0f} {(u+s)*1e6/n:.2f} {m/1024:.1f}')" "$got" "$start" "$end" "$u" "$s" "$m"
}

# One uplink run: a fresh service and sensor; prints "events_per_s cpu_us peak_mib service_cpu_us".
uplink_run() {
  local d="$tmp/uplink" port
  rm -rf "$d"; mkdir -p "$d/service"
  "$bin" service --data-dir "$d/service" --listen 127.0.0.1:0 --log-level warn >"$d/service.out" 2>"$d/service.err" &
  local spid=$!
  pids+=($spid)
  for _ in $(seq 200); do grep -q listening "$d/service.out" 2>/dev/null && break; sleep 0.05; done
  port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)$/\1/p' "$d/service.out")
  "$bin" workspace create bench --data-dir "$d/service" --public-port "$port" >/dev/null
  "$bin" sensor install --bundle "$d/service/bundles/bench.json" --config-dir "$d/sensor" \
    --proxy-url "http://127.0.0.1:$sport" --quiet >/dev/null
# INFLIGHT=N: batches in flight at once (sensor.toml's upload.inflight; default: the sensor's).
  [ -z "${INFLIGHT:-}" ] || sed -i "s/^batch_events = \([0-9]*\)$/batch_events = \1\ninflight = $INFLIGHT/" "$d/sensor/sensor.toml"
# BATCH_EVENTS=N: most events per batch (sensor.toml's upload.batch_events; default: the sensor's).
  [ -z "${BATCH_EVENTS:-}" ] || sed -i "s/^batch_events = [0-9]*$/batch_events = $BATCH_EVENTS/" "$d/sensor/sensor.toml"
# LINGER_MS=N: how long a lane back from its answer waits for a full batch (upload.linger_ms).
  [ -z "${LINGER_MS:-}" ] || sed -i "s/^batch_events = \([0-9]*\)$/batch_events = \1\nlinger_ms = $LINGER_MS/" "$d/sensor/sensor.toml"
# BATCH_BYTES=N: about the most bytes of text per batch (sensor.toml's upload.batch_bytes).
  [ -z "${BATCH_BYTES:-}" ] || sed -i "s/^batch_bytes = [0-9]*$/batch_bytes = $BATCH_BYTES/" "$d/sensor/sensor.toml"
  printf '\n[[sources.files]]\npaths = ["%s"]\n' "$tmp/input.log" >>"$d/sensor/sensor.toml"
  [ "${PARSE:-}" != json ] || printf 'format = "json"\n' >>"$d/sensor/sensor.toml"
  local before start end got deadline=$((SECONDS + 600))
  before=$(ticks "$spid")
  start=$(now)
  /usr/bin/time -f "%U %S %M" -o "$d/sensor.time" "$bin" sensor run --config-dir "$d/sensor" --log-level warn >"$d/sensor.out" 2>"$d/sensor.err" &
  local tpid=$!
  # The peak RSS split: anonymous (heap, stacks) and file-backed (the binary's code and data
  # pages, shared libraries), sampled every 100 ms (VmHWM, the total, is exact; these are not).
  local rpid=""
  for _ in $(seq 100); do rpid=$(pgrep -P "$tpid" | head -1); [ -n "$rpid" ] && break; sleep 0.02; done
  (
    ma=0 mf=0
    while [ -e "/proc/$rpid/status" ]; do
      read -r a f < <(awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a+0, f+0}' "/proc/$rpid/status" 2>/dev/null || echo 0 0)
      [ "$a" -gt "$ma" ] && ma=$a; [ "$f" -gt "$mf" ] && mf=$f
      echo "$ma $mf" >"$d/sensor.split"
      sleep 0.1
    done
  ) &
  # PERF=DIR: record both uplink processes' stacks (DWARF unwinding: Rust code has no frame
  # pointers) into DIR/service.perf and DIR/sensor.perf for bench/flame.sh. perf takes CPU of
  # its own while it records: the figures of such a run are not comparable to the others.
  local perfs=()
  if [ -n "${PERF:-}" ]; then
    mkdir -p "$PERF"
    perf record -q -F 499 --call-graph dwarf,16384 -p "$spid" -o "$PERF/service.perf" >/dev/null 2>&1 & perfs+=($!)
    perf record -q -F 499 --call-graph dwarf,16384 -p "$rpid" -o "$PERF/sensor.perf" >/dev/null 2>&1 & perfs+=($!)
  fi
  # Progress from the sensor's status.json (a file read), not `workspace stats` (a process of
  # the 140 MB binary opening the store) ten times a second, which took CPU from what is
  # measured; the count by kind once the sensor says it delivered N events (its own heartbeat
  # and inventory count there too, so that is at most one batch early).
  # The end is when the sensor had every line acknowledged: the first poll at which its
  # `delivered` count (acknowledged = committed by the service) reached N plus the sensor's own
  # events (heartbeat, inventory; known from the count by kind once the run is over). Not when
  # the count by kind answered: that is a process of the 140 MB binary opening the store and
  # counting 1M rows, ~0.1-0.2 s after the last commit, which Fluent Bit's curl poll of its
  # receiver does not pay (2026-12-06: 8 % of a run of short lines).
  local delivered seen=-1 t
  : >"$d/delivered.log"
  poll_delivered() {
    delivered=$(sed -n 's/.*"delivered": *\([0-9]*\).*/\1/p' "$d/sensor/status.json" 2>/dev/null || true)
    delivered=${delivered:-0}
    t=$(now)
    if [ "$delivered" != "$seen" ]; then echo "$t $delivered" >>"$d/delivered.log"; seen=$delivered; fi
  }
  while :; do
    poll_delivered
    [ "$delivered" -ge "$n" ] && break
    [ $SECONDS -lt $deadline ] || break
    sleep 0.05
  done
  local counts total=0
  while :; do
    # A count that fails (the store busy a moment) counts as not there yet, not as the end of
    # the run: under set -e it ended this function, and the sensor left running held the pipe
    # the caller reads, so the script hung until its timeout.
    counts=$("$bin" workspace stats bench --data-dir "$d/service" --json 2>>"$d/stats.err" | python3 -c 'import json,sys; k=json.load(sys.stdin)["events"]["by_kind"]; print(k.get("log", 0), sum(k.values()))' 2>>"$d/stats.err" || echo "0 0")
    read -r got total <<<"$counts"
    [ "$got" -ge "$n" ] && break
    [ $SECONDS -lt $deadline ] || { echo "uplink: only $got of $n lines within 600 s" >&2; break; }
    sleep 0.1
  done
  local counted; counted=$(now)
  # Every line is stored; the sensor's own events are total - N. Wait (briefly) for its count
  # to say so, if the last poll did not already.
  for _ in $(seq 100); do
    poll_delivered
    [ "$delivered" -ge "$total" ] && break
    sleep 0.05
  done
  end=$(awk -v want="$total" -v fallback="$counted" '$2 >= want {print $1; found=1; exit} END {if (!found) print fallback}' "$d/delivered.log")
  echo "uplink end: acknowledged $(python3 -c "print(f\"{$counted - $end:.3f}\")") s before the count by kind answered" >&2
  local after; after=$(ticks "$spid")
  if [ -n "${PERF:-}" ]; then
    # perf names only the threads it saw start: the others' names, by thread id, for the graphs.
    for t in /proc/"$spid"/task/*; do echo "${t##*/} $(cat "$t/comm" 2>/dev/null)"; done >"$PERF/service.threads"
    for t in /proc/"$rpid"/task/*; do echo "${t##*/} $(cat "$t/comm" 2>/dev/null)"; done >"$PERF/sensor.threads"
  fi
  for p in "${perfs[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pkill -TERM -P "$tpid" uplink 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
  kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
  read -r u s m <"$d/sensor.time"
  local ma=0 mf=0
  [ -s "$d/sensor.split" ] && read -r ma mf <"$d/sensor.split"
  python3 -c "import sys; n,st,en,u,s,m,b,a,t,ma,mf=map(float,sys.argv[1:]); print(f'{n/(en-st):.0f} {(u+s)*1e6/n:.2f} {m/1024:.1f} {(a-b)/t*1e6/n:.2f} {ma/1024:.1f}+{mf/1024:.1f}')" "$got" "$start" "$end" "$u" "$s" "$m" "$before" "$after" "$tck" "$ma" "$mf"
}

echo "$n lines (shape ${SHAPE:-298}: $(($(stat -c %s "$tmp/input.log") / n)) B average), $parse, tail -> Squid CONNECT -> HTTPS, Fluent Bit ${COMPRESS:-uncompressed} vs uplink zstd, $(nproc) cores, $runs run(s)"
printf '%-34s %12s %14s %10s %16s\n' shipper events/s "CPU us/event" "peak MiB" "service us/ev"
# Each shipper starts on the file as warm as the other: read whole just before its run (not
# counted). On this virtual machine a page-cache page not touched for a while costs several
# times more to read again (2026-12-06: `cat` of a 600 MB file 1.3 s, where a pread loop over a
# file just written copies it in 0.1 s), and Fluent Bit, first after the file is written, read
# it warm while uplink, third, read it cold: 2.24 s of the sensor's system time for 300,000
# lines of 2,000 B, 1.30 s when warmed like Fluent Bit's. WARM=0 measures without it.
warm() {
  [ "${WARM:-1}" = 0 ] || cat "$tmp/input.log" >/dev/null
}
for r in $(seq "$runs"); do
  warm
  read -r fm_eps fm_cpu fm_rss < <(fluentbit memory)
  warm
  read -r ff_eps ff_cpu ff_rss < <(fluentbit filesystem)
  warm
  read -r up_eps up_cpu up_rss up_svc up_split < <(uplink_run)
  printf '%-34s %12s %14s %10s %16s\n' "fluent-bit, memory buffering" "$fm_eps" "$fm_cpu" "$fm_rss" "-"
  printf '%-34s %12s %14s %10s %16s\n' "fluent-bit, filesystem buffering" "$ff_eps" "$ff_cpu" "$ff_rss" "-"
  printf '%-34s %12s %14s %10s %16s\n' "uplink sensor -> service (SQLite)" "$up_eps" "$up_cpu" "$up_rss" "$up_svc"
  echo "  the sensor's peak RSS, anonymous + file-backed (sampled): $up_split MiB"
  python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print(f'  run {sys.argv[5] if len(sys.argv)>5 else \"\"}ratios: events/s {a/b:.2f}x memory-buffered Fluent Bit; sensor CPU/event {c/d:.2f}x')" "$up_eps" "$fm_eps" "$up_cpu" "$fm_cpu"
done
