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
# CASES=sqlite,pg1,pg2 (the default: all three) picks cases; PG_STATS=1 loads
# pg_stat_statements in the bench's cluster and prints each PostgreSQL case's top statements;
# PAD=N makes each event's message N bytes (default 120; PAD=1900 for events of ~2,000 B);
# NO_BUILD=1 runs target/release/uplink as it is; BIN=path runs that binary instead (e.g. a saved
# before-build, to alternate old and new in one session), without building.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500000}
sensors=${2:-50}
cases=",${CASES:-sqlite,pg1,pg2},"
per=$(( n / sensors ))
n=$(( per * sensors ))
export PATH="$PATH:/usr/sbin"
for p in haproxy python3 curl; do command -v "$p" >/dev/null || { echo "bench/ingest.sh: $p is missing (apt-get install haproxy python3 curl)"; exit 2; }; done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "bench/ingest.sh: PostgreSQL is missing (apt-get install postgresql)"; exit 2; }

[ -n "${NO_BUILD:-}${BIN:-}" ] || cargo build --release --quiet --all-features -p uplink
bin=$(realpath "${BIN:-target/release/uplink}")
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
# The CPU ticks of waited-for children of this shell (the sensors' runs), of the PostgreSQL
# cluster (postmaster and its live backends), and of the whole machine (every core, busy time).
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
pg_ticks() {
  [ -n "${pg_pid:-}" ] || { echo 0; return; }
  local t=0 p
  # The postmaster's own and its exited children's, then each live child's.
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pg_pid/stat")
  for p in $(cat "/proc/$pg_pid/task/$pg_pid/children" 2>/dev/null); do
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$t"
}
all_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
tck=$(getconf CLK_TCK)

# PostgreSQL refuses to run as root: as root, the cluster is the postgres user's.
pg() {
  local prog=$1; shift
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$pgbin/$prog" "$@"; else "$pgbin/$prog" "$@"; fi
}

# Events of ~200 bytes (PAD=N: a message of N bytes instead of 120), numbered per sensor.
python3 - "$per" "${PAD:-120}" >"$tmp/events.ndjson" <<'PY'
import sys
per = int(sys.argv[1])
pad = "x" * int(sys.argv[2])
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
  local c_before pg_before all_before
  c_before=$(child_ticks); pg_before=$(pg_ticks); all_before=$(all_ticks)
  local start end runs=()
  start=$(date +%s.%N)
  for i in $(seq "$sensors"); do
    "$bin" sensor run --once --timeout 600 --config-dir "$tmp/$ws-s$i" --log-level warn >/dev/null 2>"$tmp/$ws-s$i.err" &
    runs+=($!)
  done
  local failed=0
  for p in "${runs[@]}"; do wait "$p" || failed=$(( failed + 1 )); done
  end=$(date +%s.%N)
  local c_after pg_after all_after
  c_after=$(child_ticks); pg_after=$(pg_ticks); all_after=$(all_ticks)
  local after=0
  local hwm=0 h
  for p in "${svc_pids[@]}"; do
    after=$(( after + $(ticks "$p") ))
    h=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status"); [ "$h" -gt "$hwm" ] && hwm=$h
  done
  echo "$label: the service's peak RSS $(( hwm / 1024 )) MiB (VmHWM; the largest replica)"
  local lb_after=0; [ -n "${lb_pid:-}" ] && lb_after=$(ticks "$lb_pid")
  local stored
  stored=$("$bin" workspace stats "$ws" "$@" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"]["by_kind"].get("logon", 0))')
  results+=("$label|$start|$end|$before|$after|$lb_before|$lb_after|$stored|$failed|$((c_after - c_before))|$((pg_after - pg_before))|$((all_after - all_before))")
}
results=()

# 1. SQLite, one process.
if [[ $cases == *,sqlite,* ]]; then
  mkdir -p "$tmp/sqlite"
  start_service sqlite --data-dir "$tmp/sqlite"
  public_port=$svc_port
  run_case "SQLite, 1 process" --data-dir "$tmp/sqlite"
  for p in "${svc_pids[@]}"; do kill "$p"; done
  svc_pids=()
fi

# A private PostgreSQL cluster on a Unix socket (fsync and synchronous_commit on, as in
# production), with what a write-heavy deployment's postgresql.conf would set
# (docs/scale-out.md): a larger WAL between checkpoints (a checkpoint in the middle of a case
# makes every page's first change after it write the whole page to the WAL again) and WAL buffers.
mkdir -p "$tmp/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$tmp/pg"
pg_data="$tmp/pg/data"
pg initdb -D "$pg_data" -U uplink -A trust -E UTF8 --locale=C --no-sync --no-instructions >/dev/null
printf "listen_addresses = ''\nunix_socket_directories = '%s'\nport = 5432\nfsync = on\nmax_connections = 200\nshared_buffers = 256MB\nwal_buffers = 64MB\nmax_wal_size = 8GB\ncheckpoint_timeout = 30min\n" "$tmp/pg" >>"$pg_data/postgresql.conf"
[ -n "${PG_STATS:-}" ] && echo "shared_preload_libraries = 'pg_stat_statements'" >>"$pg_data/postgresql.conf"
pg pg_ctl start -w -D "$pg_data" -l "$tmp/pg/log" >/dev/null
pg_pid=$(head -1 "$pg_data/postmaster.pid")
pg createdb -h "$tmp/pg" -U uplink uplink
[ -n "${PG_STATS:-}" ] && pg psql -h "$tmp/pg" -U uplink -d uplink -X -q -c "CREATE EXTENSION pg_stat_statements" >/dev/null
db=(--database "postgres://uplink@/uplink?host=$tmp/pg" --master-key-file "$tmp/master.key")

pg_stats() {
  [ -n "${PG_STATS:-}" ] || return 0
  echo "== $1: top statements (pg_stat_statements)"
  pg psql -h "$tmp/pg" -U uplink -d uplink -X -q -c "SELECT calls, round(total_exec_time) AS ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8" -c "SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables WHERE autovacuum_count + autoanalyze_count > 0" -c "SELECT pg_stat_statements_reset()" >&2
}

# 2. PostgreSQL, one replica.
if [[ $cases == *,pg1,* ]]; then
  start_service pg1 "${db[@]}"
  public_port=$svc_port
  run_case "PostgreSQL, 1 replica" "${db[@]}"
  pg_stats "1 replica"
  for p in "${svc_pids[@]}"; do kill "$p"; done
  svc_pids=()
fi

# 3. PostgreSQL, two replicas behind HAProxy.
if [[ $cases == *,pg2,* ]]; then
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
pg_stats "2 replicas"
fi

echo "$sensors concurrent sensors x $per events (~200 bytes) = $n events per case; $(nproc) cores; $(date -u +%F)"
echo "CPU µs per event: the service (all replicas), HAProxy, PostgreSQL (postmaster and backends), the"
echo "sensors' runs, and the whole machine (every process, both cores) during the upload phase."
python3 - "$n" "$tck" "${results[@]}" <<'PY'
import sys
n, tck = int(sys.argv[1]), int(sys.argv[2])
us = lambda t: int(t) / tck * 1e6 / n
print(f"  {'case':34} {'events/s':>10} {'service':>8} {'HAProxy':>8} {'Postgres':>9} {'sensors':>8} {'machine':>8}  stored")
for r in sys.argv[3:]:
    label, start, end, b, a, lb, la, stored, failed, sens, pgt, allt = r.split("|")
    secs = float(end) - float(start)
    ok = "all" if int(stored) == n else f"MISSING {n - int(stored)}"
    fails = f" ({failed} sensor runs failed)" if failed != "0" else ""
    lbs = f"{us(int(la) - int(lb)):8.2f}" if "HAProxy" in label else f"{'-':>8}"
    pgs = f"{us(pgt):9.2f}" if "PostgreSQL" in label else f"{'-':>9}"
    print(f"  {label:34} {n/secs:10,.0f} {us(int(a) - int(b)):8.2f} {lbs} {pgs} {us(sens):8.2f} {us(allt):8.2f}  {ok}{fails}")
PY
