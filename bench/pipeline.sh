#!/usr/bin/env bash
# Pipeline benchmark: N events (default 1,000,000) of ~300 bytes through
#   uplink sensor send → durable queue → uplink sensor run → Squid (CONNECT, Basic auth)
#   → uplink service → SQLite
# all on loopback. Prints events/s end to end, the sensor's CPU µs per event and peak RSS
# (for `send` and for `run`), and the service's CPU µs per event and peak RSS.
# Needs squid (and its basic_ncsa_auth helper), openssl, /usr/bin/time. Usage: bench/pipeline.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
for p in squid openssl /usr/bin/time; do command -v "$p" >/dev/null || { echo "bench/pipeline.sh: $p is missing (apt-get install squid openssl time)"; exit 2; }; done

cargo build --release --quiet --all-features -p uplink
bin=$PWD/target/release/uplink
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

# The service.
mkdir -p "$tmp/service"
"$bin" service --data-dir "$tmp/service" --listen 127.0.0.1:0 --log-level warn >"$tmp/service.out" 2>"$tmp/service.err" &
service_pid=$!
pids+=($service_pid)
for _ in $(seq 100); do grep -q listening "$tmp/service.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/service.out")
"$bin" workspace create bench --data-dir "$tmp/service" --public-port "$port" >/dev/null

# Squid with Basic authentication for CONTOSO\proxyuser.
sport=$(free_port)
echo "CONTOSO\\proxyuser:$(openssl passwd -apr1 benchpass)" >"$tmp/passwd"
chmod 644 "$tmp/passwd"
echo "127.0.0.1 benchsensorapi.uplink.localhost" >"$tmp/hosts"
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
auth_param basic program /usr/lib/squid/basic_ncsa_auth $tmp/passwd
auth_param basic casesensitive on
acl authed proxy_auth REQUIRED
acl CONNECT method CONNECT
http_access allow CONNECT authed
http_access deny all
CONF
squid -N -f "$tmp/squid.conf" 2>"$tmp/squid.err" &
pids+=($!)
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && break; sleep 0.05; done

# The sensor.
UPLINK_PROXY_PASSWORD=benchpass "$bin" sensor install --bundle "$tmp/service/bundles/bench.json" --config-dir "$tmp/sensor" \
  --proxy-url "http://127.0.0.1:$sport" --proxy-user 'CONTOSO\proxyuser' --quiet

# N events of ~300 bytes.
python3 - "$n" >"$tmp/events.ndjson" <<'PY'
import sys
n = int(sys.argv[1])
pad = "x" * 170
out = sys.stdout
for i in range(n):
    out.write('{"kind":"logon","host":"dc01.contoso.com","user":"CONTOSO\\\\user%d","src_ip":"10.1.%d.%d","event_id":4624,"n":%d,"msg":"%s"}\n' % (i % 5000, (i >> 8) & 255, i & 255, i, pad))
PY
bytes=$(stat -c %s "$tmp/events.ndjson")

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
svc_before=$(ticks "$service_pid")

start=$(date +%s.%N)
/usr/bin/time -f "%e %U %S %M" -o "$tmp/send.time" "$bin" sensor send --config-dir "$tmp/sensor" <"$tmp/events.ndjson"
mid=$(date +%s.%N)
/usr/bin/time -f "%e %U %S %M" -o "$tmp/run.time" "$bin" sensor run --once --timeout 600 --config-dir "$tmp/sensor" --log-level warn >/dev/null
end=$(date +%s.%N)
svc_after=$(ticks "$service_pid")
svc_rss=$(awk '/VmHWM/ {print $2}' "/proc/$service_pid/status")

# Counted by kind: the sensor's own heartbeat and inventory events are not the events sent.
stored=$("$bin" workspace stats bench --data-dir "$tmp/service" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"]["by_kind"].get("logon", 0))')
read -r s_wall s_user s_sys s_rss <"$tmp/send.time"
read -r r_wall r_user r_sys r_rss <"$tmp/run.time"
python3 - "$n" "$bytes" "$start" "$mid" "$end" "$s_user" "$s_sys" "$s_rss" "$r_user" "$r_sys" "$r_rss" "$svc_before" "$svc_after" "$tck" "$svc_rss" "$stored" <<'PY'
import sys
(n, size, start, mid, end, su, ss, srss, ru, rs, rrss, sb, sa, tck, svc_rss, stored) = sys.argv[1:]
n = int(n); start, mid, end = float(start), float(mid), float(end)
send_cpu = float(su) + float(ss); run_cpu = float(ru) + float(rs)
svc_cpu = (int(sa) - int(sb)) / int(tck)
print(f"{n:,} events, {int(size)/n:.0f} bytes each, sensor -> Squid (Basic auth, CONNECT) -> service -> SQLite")
print(f"  stored by the service : {int(stored):,} logon events ({'all' if int(stored) == n else 'MISSING ' + str(n - int(stored))})")
print(f"  queueing (send)       : {n/(mid-start):>10,.0f} events/s   {send_cpu*1e6/n:5.2f} CPU us/event   peak RSS {int(srss)/1024:6.1f} MiB")
print(f"  uploading (run --once): {n/(end-mid):>10,.0f} events/s   {run_cpu*1e6/n:5.2f} CPU us/event   peak RSS {int(rrss)/1024:6.1f} MiB")
print(f"  end to end            : {n/(end-start):>10,.0f} events/s   sensor {(send_cpu+run_cpu)*1e6/n:5.2f} CPU us/event")
print(f"  service               :                    {svc_cpu*1e6/n:5.2f} CPU us/event   peak RSS {int(svc_rss)/1024:6.1f} MiB")
PY
