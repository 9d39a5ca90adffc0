#!/usr/bin/env bash
# Idle benchmark: `uplink sensor run` with nothing to send (the default sources: a heartbeat every
# 60 s, an inventory at start), against a real service on loopback. Prints the resident set after
# it settles (SECS seconds, default 15): VmRSS, its anonymous and file-backed parts, the resident
# pages of each mapped file, the threads, and which build was measured. Goal: at most 8 MiB.
# SECS of 75 or more include a heartbeat (every 60 s) and the trim after it.
#
# PROFILE=dist (the default) measures the binary to ship, built by bench/dist.sh; PROFILE=release
# measures `cargo build --release` (what the tests and the README's quickstart use).
# BIN=PATH measures that binary instead, e.g. the installed package's /usr/bin/uplink; DEB=PATH
# the /usr/bin/uplink of that package (packaging/build-deb.sh's .deb), extracted first: the
# README's figure is `DEB=target/debian/uplink_VERSION-1_amd64.deb bench/idle.sh 15`.
# Usage: [PROFILE=dist|release] [BIN=PATH | DEB=PATH] bench/idle.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
profile=${PROFILE:-dist}
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${DEB:-}" ]; then
  debx=$(mktemp -d)
  dpkg-deb -x "$DEB" "$debx"
  BIN=$debx/usr/bin/uplink
fi
case ${BIN:+bin}$profile in
  bin*) bin=$BIN; profile="binary $BIN${DEB:+ (from $DEB)}" ;;
  dist) bin=$(bench/dist.sh) ;;
  *) cargo build --profile "$profile" --quiet -p uplink
     bin=$target/$profile/uplink ;;
esac
. bench/setup.sh
# setup.sh's clean-up, and the extracted package.
if [ -n "${debx:-}" ]; then trap 'cleanup; rm -rf "$debx"' EXIT; fi

"$bin" sensor run --config-dir "$tmp/sensor" --log-level warn 2>"$tmp/sensor.err" &
sensor_pid=$!
pids+=($sensor_pid)
# Settled: the start's heartbeat and inventory delivered, then SECS seconds of idling.
for _ in $(seq 100); do [ "$(stored inventory)" -ge 1 ] && break; sleep 0.1; done
[ "$(stored heartbeat)" -ge 1 ] || { echo "no heartbeat stored:"; cat "$tmp/sensor.err"; exit 1; }
# Sampled every second meanwhile: the idle sensor's memory moves (a heartbeat every 60 s maps its
# connection's code again; `sensor run --idle-trim`, 10 s, gives it back), so the figure at the
# end is not the whole story: the range over the window is printed too.
lo=; hi=0
for i in $(seq "$secs"); do
  sleep 1
  r=$(rss_kib $sensor_pid)
  # The range from 15 s on (by then the start's memory has been given back).
  [ "$i" -lt 15 ] && [ "$secs" -gt 15 ] && continue
  [ -z "$lo" ] || [ "$r" -lt "$lo" ] && lo=$r
  [ "$r" -gt "$hi" ] && hi=$r
done
echo "profile $profile: $bin ($(du -m "$bin" | cut -f1) MB)"
echo "idle sensor after ${secs} s: RSS $(rss_kib $sensor_pid) KiB (${lo:-?}-$hi KiB sampled each second from 15 s on), peak $(hwm_kib $sensor_pid) KiB, CPU $(cpu_secs $sensor_pid) s"
grep -E '^(VmRSS|RssAnon|RssFile|Threads)' "/proc/$sensor_pid/status" | tr -s '\t ' ' '
# Resident KiB by mapping: each file's pages, and the anonymous ones ([heap], [stack], the rest).
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "[anonymous]"; sub(/.*\//, "", name) }
     /^Rss:/ { rss[name] += $2 }
     END { for (n in rss) if (rss[n] > 0) printf "  %6d KiB %s\n", rss[n], n }' \
  "/proc/$sensor_pid/smaps" | sort -rn
# The binary's own mappings (ELF segments: r-- headers/.rodata/.eh_frame, r-x .text, rw- relro
# and data), to see which part of the binary is resident.
echo "binary's mappings:"
awk -v bin="$(realpath "$bin")" '/^[0-9a-f]+-[0-9a-f]+ / { cur = ($6 == bin); perm = $2 }
     cur && /^Size:/ { size = $2 } cur && /^Rss:/ { printf "  %6d KiB of %6d KiB %s\n", $2, size, perm }' \
  "/proc/$sensor_pid/smaps"
