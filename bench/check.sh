#!/usr/bin/env bash
# `uplink check` concurrency benchmark: the whole MDE profile (region us, 13 URLs) with every
# method, against a worst case — every host answers TCP and then stays silent, so each probe runs
# to its timeout. Probes run concurrently, each under its own deadline, so the wall time should be
# about ONE timeout, not the sum (13 URLs x 4 testable methods x T).
#
# Nothing public is contacted: every MDE host is mapped with --connect-to to a silent listener on
# loopback (a python3 socket that listens and never accepts; the kernel completes the handshakes).
# The `cli` and `pac` methods use the same listener as their proxy (CONNECT gets no answer).
#
#   bench/check.sh [TIMEOUT_SECS] [RUNS]     defaults: 2, 3
#   UPLINK=/path/to/uplink bench/check.sh    use a built binary instead of a release build
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
timeout=${1:-2}
runs=${2:-3}
command -v python3 >/dev/null || { echo "bench/check.sh: python3 is missing (apt-get install python3)"; exit 2; }
if [ -z "${UPLINK:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
  cargo build --release -q -p uplink --manifest-path "$here/Cargo.toml"
  UPLINK=$CARGO_TARGET_DIR/release/uplink
fi
tmp=$(mktemp -d)
python3 -u -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4096)
print(s.getsockname()[1]); time.sleep(3600)' > "$tmp/port" &
silent=$!
trap 'kill $silent 2>/dev/null; rm -rf "$tmp"' EXIT
until [ -s "$tmp/port" ]; do sleep 0.05; done
port=$(cat "$tmp/port")
printf 'function FindProxyForURL(url, host) { return "PROXY 127.0.0.1:%s"; }\n' "$port" > "$tmp/bench.pac"

best=
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  code=0
  env -u https_proxy -u HTTPS_PROXY -u http_proxy -u HTTP_PROXY -u all_proxy -u ALL_PROXY \
    "$UPLINK" check --profile mde --region us --timeout "$timeout" \
      --connect-to "::127.0.0.1:$port" --proxy "http://127.0.0.1:$port" --pac "$tmp/bench.pac" \
      --format json > "$tmp/out.json" || code=$?
  end=$(date +%s.%N)
  [ "$code" = 1 ] || { echo "bench/check.sh: expected exit 1 (every probe times out), got $code"; exit 1; }
  wall=$(python3 -c "print(f'{$end - $start:.2f}')")
  echo "run $i: ${wall} s"
  best=$(python3 -c "b='$best'; print($wall if not b else min(float(b), $wall))")
done
python3 - "$tmp/out.json" "$timeout" "$best" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])); t = float(sys.argv[2]); w = float(sys.argv[3])
probes = [m for u in v["urls"] for m in u["methods"] if m["code"] != "NOT_CONFIGURED"]
print(f"uplink check: MDE us profile, {len(v['urls'])} URLs x 6 methods, {len(probes)} probes "
      f"that each run to the {t:g} s timeout: best wall time {w:.2f} s = {w / t:.2f} timeouts "
      f"(sequential would be {len(probes) * t:g} s)")
PY
