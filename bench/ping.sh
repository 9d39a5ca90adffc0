#!/usr/bin/env bash
# Ping benchmark: requests/s over TLS keep-alive with `wrk -t1 -c64 -d10s`, uplink vs nginx
# (`return 200 "Ok"`, ECDSA P-256 certificate for both), in one run, plus each server's CPU time
# per request (from /proc/PID/stat, all of the server's processes).
#
# Runs inside a network namespace made for the run, whose /etc/hosts (from /etc/netns/NAME/hosts)
# maps the workspace host to loopback: wrk then sends the real SNI and Host, like a sensor.
# Needs root (ip netns), wrk, nginx-light, openssl. Usage: bench/ping.sh [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
for p in wrk nginx openssl ip; do command -v "$p" >/dev/null || { echo "bench/ping.sh: $p is missing (apt-get install wrk nginx-light openssl iproute2)"; exit 2; }; done

cargo build --release --quiet
bin=$PWD/target/release/uplink
ns=uplink-bench-$$
tmp=$(mktemp -d)
host=benchsensorapi.uplink.localhost
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "/etc/netns/$ns" "$tmp"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "/etc/netns/$ns"
echo "127.0.0.1 $host" >"/etc/netns/$ns/hosts"
run() { ip netns exec "$ns" "$@"; }

# uplink: a workspace whose public port is the one we listen on.
"$bin" workspace create bench --data-dir "$tmp/data" --public-port 8443 >/dev/null
# Not through `run`: a backgrounded shell function would make $! a subshell, not uplink.
# `ip netns exec` execs the command, so $! is the service itself.
ip netns exec "$ns" "$bin" service --data-dir "$tmp/data" --listen 127.0.0.1:8443 --log-level warn >"$tmp/uplink.out" 2>&1 &
pids+=($!)
uplink_pid=$!

# nginx: same certificate type (ECDSA P-256 leaf from a P-256 CA), same host name.
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key" 2>/dev/null
openssl req -x509 -new -key "$tmp/ca.key" -subj "/CN=bench CA" -days 2 -out "$tmp/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/leaf.key" 2>/dev/null
openssl req -new -key "$tmp/leaf.key" -subj "/CN=$host" -out "$tmp/leaf.csr" 2>/dev/null
printf "subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n" "$host" >"$tmp/ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -days 2 -extfile "$tmp/ext" -out "$tmp/leaf.pem" 2>/dev/null
cat >"$tmp/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:9443 ssl;
    server_name $host;
    ssl_certificate $tmp/leaf.pem;
    ssl_certificate_key $tmp/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /tri/sensor/api/ping { return 200 "Ok"; }
  }
}
CONF
run nginx -c "$tmp/nginx.conf"

# Wait for both (bounded) before measuring.
for i in $(seq 100); do
  run bash -c "exec 3<>/dev/tcp/127.0.0.1/8443 && exec 3<>/dev/tcp/127.0.0.1/9443" 2>/dev/null && break
  sleep 0.1
done

cpu_ticks() { # total utime+stime of a process and its children threads/processes
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $total
}
tck=$(getconf CLK_TCK)

measure() { # name url pids...
  local name=$1 url=$2; shift 2
  local before after out rps reqs
  before=$(cpu_ticks "$@")
  out=$(run wrk -t1 -c"$conns" -d"$duration" "$url")
  after=$(cpu_ticks "$@")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  local errors; errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  [ -n "$errors" ] && echo "$name: $errors"
  local cpu_s; cpu_s=$(awk -v a="$after" -v b="$before" -v t="$tck" 'BEGIN {printf "%.2f", (a-b)/t}')
  local us; us=$(awk -v a="$after" -v b="$before" -v t="$tck" -v r="$reqs" 'BEGIN {printf "%.1f", (a-b)/t*1e6/r}')
  printf "%-8s %12s req/s  %10s requests  %7s CPU s  %7s CPU us/request\n" "$name" "$rps" "$reqs" "$cpu_s" "$us"
  echo "$rps $us" >"$tmp/$name.result"
}

nginx_pids=$(cat "$tmp/nginx.pid"; pgrep -P "$(cat "$tmp/nginx.pid")")
echo "wrk -t1 -c$conns -d$duration, TLS keep-alive, GET /tri/sensor/api/ping ($(nproc) cores)"
measure uplink "https://$host:8443/tri/sensor/api/ping" "$uplink_pid"
# shellcheck disable=SC2086
measure nginx "https://$host:9443/tri/sensor/api/ping" $nginx_pids
read -r u_rps u_us <"$tmp/uplink.result"
read -r n_rps n_us <"$tmp/nginx.result"
awk -v u="$u_rps" -v n="$n_rps" -v uc="$u_us" -v nc="$n_us" \
  'BEGIN {printf "uplink/nginx: %.2fx requests/s, %.2fx CPU per request\n", u/n, uc/nc}'
