#!/usr/bin/env bash
# Regenerates bench/idle.order, the layout bench/dist.sh links the shipped binary with: every
# function of the binary that an idle `uplink sensor run` executes (start-up, enrollment files,
# the connection, the first heartbeat and inventory, then SECS seconds of idling; default 10),
# recorded by valgrind's callgrind against a real service on loopback, as "mangled<TAB>key" lines
# (bench/symbol-keys.sh: what bench/dist.sh matches) in address order. Run it after changing what the sensor does at start-up
# or idle, then bench/idle.sh to see the figure. Needs valgrind.
# Usage: [UPLINK_FEATURES=kerberos] [BIN=PATH] bench/idle-order.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v valgrind >/dev/null || { echo "bench/idle-order.sh needs valgrind (apt-get install valgrind)"; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
# UPLINK_FEATURES: the features of the binary to lay out (packaging/build-deb.sh ships kerberos).
features=()
if [ -n "${UPLINK_FEATURES:-}" ]; then
  features=(--features "$UPLINK_FEATURES")
fi
# The dist build's v0 mangling (bench/dist.sh: the same RUSTFLAGS, or cargo rebuilds everything).
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Csymbol-mangling-version=v0"
# BIN=PATH records that dist binary (e.g. a copy, while the tree builds another).
if [ -n "${BIN:-}" ]; then
  bin=$(realpath "$BIN")
else
  cargo build --profile dist -p uplink "${features[@]}" --quiet
  bin=$(realpath "$target/dist/uplink")
fi
. bench/setup.sh

valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" --demangle=no --dump-line=no \
  --compress-strings=no --compress-pos=no \
  "$bin" sensor run --config-dir "$tmp/sensor" --log-level warn 2>"$tmp/sensor.err" &
sensor_pid=$!
pids+=($sensor_pid)
# Under valgrind everything is ~50 times slower: allow a minute for the start's events.
for _ in $(seq 600); do [ "$(stored inventory)" -ge 1 ] && break; sleep 0.1; done
[ "$(stored heartbeat)" -ge 1 ] || { echo "no heartbeat stored:"; cat "$tmp/sensor.err"; exit 1; }
sleep "$secs"
# SIGTERM: the sensor stops cleanly and callgrind writes its profile on exit.
kill -TERM "$sensor_pid"
wait "$sensor_pid" || true

# Every function callgrind saw in the binary (as caller or callee).
awk -v ob="$bin" '
  /^ob=/ { cur = substr($0, 4) } /^cob=/ { ccur = substr($0, 5) }
  /^fn=/ && cur == ob { print substr($0, 4) } /^cfn=/ && ccur == ob { print substr($0, 5) }
' "$tmp/callgrind.out" | sort -u >"$tmp/ran"
{
  echo "# Functions an idle \`uplink sensor run\` executes, in address order: bench/idle-order.sh,"
  echo "# $(rustc -V), $(date -u +%Y-%m-%d). Used by bench/dist.sh; mangled<TAB>key (bench/symbol-keys.sh)."
  bench/symbol-keys.sh "$bin" | awk -F'\t' -v ran="$tmp/ran" '
      BEGIN { while ((getline f < ran) > 0) want[f] = 1 }
      $2 in want' | sort | cut -f2-
} >bench/idle.order
echo "bench/idle.order: $(grep -vc '^#' bench/idle.order) functions"
