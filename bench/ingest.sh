#!/usr/bin/env bash
# Ingest benchmark: S concurrent sensors (default 50) upload N events in total (default 500,000,
# ~200 bytes each) into
#   1. SQLite (one service process),
#   2. PostgreSQL with one replica,
#   3. PostgreSQL with two replicas behind HAProxy (TCP mode, send-proxy-v2, /healthz checks),
# all on loopback, in one run. Every sensor's queue is filled first (`sensor send`, not timed);
# then all sensors run `sensor run --once` at the same moment, and the upload phase is timed.
# Prints events/s and the service's CPU µs per event (all replicas together; PostgreSQL's own CPU
# is not counted, HAProxy's is shown apart). A benchmark, not a test: one run, no assertion but
# that every event was stored.
# Needs postgresql (initdb), haproxy, python3. Usage: bench/ingest.sh [N] [S]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500000}
sensors=${2:-50}
per=$(( n / sensors ))
n=$(( per * sensors ))
export PATH="$PATH:/usr/sbin"
for p in haproxy python3 curl; do command -v "$p" >/dev/null || { echo "bench/ingest.sh: $p is missing (apt-get install haproxy python3 curl)"; exit 2; }; done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "bench/ingest.sh: PostgreSQL is missing (apt-get install postgresql)"; exit 2; }

cargo build --release --quiet
bin=$PWD/target/release/uplink
tmp=$(mktemp -d /tmp/uplink-ingest.XXXXXX)
chmod 755 "$tmp"
pids=()
pg_data=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$pg_data" ] && pg pg_ctl stop -m immediate -D "$pg_data" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

# PostgreSQL refuses to run as root: as root, the cluster is the postgres user's.
pg() {
  local prog=$1; shift
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$pgbin/$prog" "$@"; else "$pgbin/$prog" "$@"; fi
}

# Events of ~200 bytes, numbered per sensor.
python3 - "$per" >"$tmp/events.ndjson" <<'PY'
import sys
per = int(sys.argv[1])
pad = "x" * 120
out = sys.stdout
for i in range(per):
    out.write('{"kind":"logon","host":"dc01.contoso.com","event_id":4624,"n":%d,"msg":"%s"}\n' % (i, pad))
PY

# start_service NAME ARGS... : a service in the background; sets svc_port and records its pid.
svc_pids=()
start_service() {
  local name=$1; shift
  "$bin" service --listen 127.0.0.1:0 --log-level warn "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=($pid); svc_pids+=($pid)
  for _ in $(seq 400); do grep -q listening "$tmp/$name.out" 2>/dev/null && break; sleep 0.05; done
  svc_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
  [ -n "$svc_port" ] || { echo "the service $name did not start:"; cat "$tmp/$name.err"; exit 1; }
}

# run_case LABEL STORE_ARGS... : workspace, S sensors enrolled and filled, the timed upload.
run_case() {
  local label=$1; shift
  local ws="w$(( ${#results[@]} + 1 ))"
  "$bin" workspace create "$ws" "$@" --public-port "$public_port" --bundle-out "$tmp/$ws.json" >/dev/null
  for i in $(seq "$sensors"); do
    "$bin" sensor install --bundle "$tmp/$ws.json" --config-dir "$tmp/$ws-s$i" --quiet >/dev/null
    "$bin" sensor send --config-dir "$tmp/$ws-s$i" <"$tmp/events.ndjson"
  done
  local before=0 p
  for p in "${svc_pids[@]}"; do before=$(( before + $(ticks "$p") )); done
  local lb_before=0; [ -n "${lb_pid:-}" ] && lb_before=$(ticks "$lb_pid")
  local start end runs=()
  start=$(date +%s.%N)
  for i in $(seq "$sensors"); do
    "$bin" sensor run --once --timeout 600 --config-dir "$tmp/$ws-s$i" --log-level warn >/dev/null 2>"$tmp/$ws-s$i.err" &
    runs+=($!)
  done
  local failed=0
  for p in "${runs[@]}"; do wait "$p" || failed=$(( failed + 1 )); done
  end=$(date +%s.%N)
  local after=0
  for p in "${svc_pids[@]}"; do after=$(( after + $(ticks "$p") )); done
  local lb_after=0; [ -n "${lb_pid:-}" ] && lb_after=$(ticks "$lb_pid")
  local stored
  stored=$("$bin" workspace stats "$ws" "$@" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"]["by_kind"].get("logon", 0))')
  results+=("$label|$start|$end|$before|$after|$lb_before|$lb_after|$stored|$failed")
}
results=()

# 1. SQLite, one process.
mkdir -p "$tmp/sqlite"
start_service sqlite --data-dir "$tmp/sqlite"
public_port=$svc_port
run_case "SQLite, 1 process" --data-dir "$tmp/sqlite"
for p in "${svc_pids[@]}"; do kill "$p"; done
svc_pids=()

# A private PostgreSQL cluster on a Unix socket (fsync on, as in production).
mkdir -p "$tmp/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$tmp/pg"
pg_data="$tmp/pg/data"
pg initdb -D "$pg_data" -U uplink -A trust -E UTF8 --locale=C --no-sync --no-instructions >/dev/null
printf "listen_addresses = ''\nunix_socket_directories = '%s'\nport = 5432\nfsync = on\nmax_connections = 200\nshared_buffers = 256MB\n" "$tmp/pg" >>"$pg_data/postgresql.conf"
pg pg_ctl start -w -D "$pg_data" -l "$tmp/pg/log" >/dev/null
pg createdb -h "$tmp/pg" -U uplink uplink
db=(--database "postgres://uplink@/uplink?host=$tmp/pg" --master-key-file "$tmp/master.key")

# 2. PostgreSQL, one replica.
start_service pg1 "${db[@]}"
public_port=$svc_port
run_case "PostgreSQL, 1 replica" "${db[@]}"
for p in "${svc_pids[@]}"; do kill "$p"; done
svc_pids=()

# 3. PostgreSQL, two replicas behind HAProxy.
start_service r1 "${db[@]}" --proxy-protocol; p1=$svc_port
start_service r2 "${db[@]}" --proxy-protocol; p2=$svc_port
public_port=$(free_port)
cat >"$tmp/haproxy.cfg" <<CONF
defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 2s
    retries 3
    option redispatch 1
frontend sensors
    bind 127.0.0.1:$public_port
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server send-proxy-v2 check check-ssl verify none inter 1s fall 2 rise 2
    server r1 127.0.0.1:$p1
    server r2 127.0.0.1:$p2
CONF
haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
lb_pid=$!
pids+=($lb_pid)
for _ in $(seq 200); do curl -sk -o /dev/null "https://127.0.0.1:$public_port/healthz" 2>/dev/null && break; sleep 0.05; done
run_case "PostgreSQL, 2 replicas + HAProxy" "${db[@]}"

echo "$sensors concurrent sensors x $per events (~200 bytes) = $n events per case; $(nproc) cores; $(date -u +%F)"
python3 - "$n" "$tck" "${results[@]}" <<'PY'
import sys
n, tck = int(sys.argv[1]), int(sys.argv[2])
print(f"  {'case':34} {'events/s':>10} {'service CPU us/event':>21} {'HAProxy CPU us/event':>21}  stored")
for r in sys.argv[3:]:
    label, start, end, b, a, lb, la, stored, failed = r.split("|")
    secs = float(end) - float(start)
    svc = (int(a) - int(b)) / tck * 1e6 / n
    lbc = (int(la) - int(lb)) / tck * 1e6 / n
    ok = "all" if int(stored) == n else f"MISSING {n - int(stored)}"
    fails = f" ({failed} sensor runs failed)" if failed != "0" else ""
    lbs = f"{lbc:21.2f}" if "HAProxy" in label else f"{'-':>21}"
    print(f"  {label:34} {n/secs:10,.0f} {svc:21.2f} {lbs}  {ok}{fails}")
PY
