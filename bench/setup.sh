# Sourced by bench/idle.sh, bench/idle-order.sh and bench/tail.sh (not run on its own): with the
# uplink binary in $bin, a service on a free loopback port with workspace "bench", and a sensor
# installed in $tmp/sensor. Defines: tmp, port, pids (killed on exit), rss_kib PID, hwm_kib PID,
# cpu_secs PID, stored KIND.
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/service"
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
