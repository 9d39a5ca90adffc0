#!/usr/bin/env bash
# Builds the binary to ship: the `dist` profile (root Cargo.toml), linked with the functions the
# idle sensor runs laid out together (bench/idle.order), so that the kernel maps fewer pages of
# code into a long-running sensor. Prints the binary's path on stdout.
#
# Why the layout matters: every page fault on the binary maps its aligned 64 KiB window (the
# kernel's fault-around), so the sensor's resident code is the number of windows the code it ran
# touches, times 64 KiB. In the default layout the ~1.9 MiB the idle sensor runs is scattered over
# 12 MiB of code: ~7 MiB resident. Laid out together: 3 MiB. See docs/benchmarks.md.
#
# How: lld's --symbol-ordering-file (rust-lld is the default linker of x86_64-unknown-linux-gnu
# since Rust 1.90; older toolchains link with cc and the GNU linker, which lacks that option: then
# this script says so and builds without it). The dist build uses the v0 symbol mangling
# (-C symbol-mangling-version=v0, set here and in bench/idle-order.sh: the same RUSTFLAGS, or cargo
# rebuilds everything): its demangled names spell the whole instance (generic arguments, closure
# numbers) without the crates' hashes. bench/idle.order lists functions by that key
# (bench/symbol-keys.sh), so a function keeps its place when unrelated code, a dependency or
# Cargo.lock changes; names missing from the binary are ignored. Regenerate the list with
# bench/idle-order.sh after changing what the sensor runs at start-up or idle, and check with
# bench/idle.sh.
#
# Not done: packing the relative relocations (-z pack-relative-relocs) measured 32 KiB less and
# would need glibc 2.36 on every host that runs the binary.
#
# Usage: bench/dist.sh          (honors CARGO_TARGET_DIR; UPLINK_FEATURES, e.g. kerberos, as
#                               packaging/build-deb.sh ships; progress on stderr)
set -euo pipefail
cd "$(dirname "$0")/.."
features=()
if [ -n "${UPLINK_FEATURES:-}" ]; then
  features=(--features "$UPLINK_FEATURES")
fi
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/dist/uplink
# v0 mangling (see above). Appended to the caller's RUSTFLAGS; bench/idle-order.sh does the same.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Csymbol-mangling-version=v0"

ord_rustc() {
  cargo rustc --profile dist -p uplink --bin uplink "${features[@]}" --quiet -- \
    -C "link-arg=-Wl,--symbol-ordering-file=$1" -C "link-arg=-Wl,--no-warn-symbol-ordering" >&2
}
# The mangled names of the binary's functions that bench/idle.order names by key, in the list's
# order (a key two symbols share, e.g. a generic instance copied into two crates, places both),
# written to target/dist/idle-order-HASH.txt (the content's hash: cargo relinks when the
# arguments change); prints that path.
map_list() {
  local tmp sum out
  tmp=$(mktemp)
  bench/symbol-keys.sh "$1" | awk -F'\t' -v list=bench/idle.order '
      BEGIN {
        while ((getline line < list) > 0) {
          if (line ~ /^#/ || line == "") continue
          split(line, f, "\t"); n++; if (!(f[2] in pos)) pos[f[2]] = n
        }
      }
      $3 in pos { print pos[$3] "\t" $2 }' | sort -n -s | cut -f2 >"$tmp"
  sum=$(sha256sum "$tmp" | cut -c1-16)
  out=$target/dist/idle-order-$sum.txt
  mv "$tmp" "$out"
  echo "$out"
}

if [ ! -x "$bin" ]; then
  cargo build --profile dist -p uplink "${features[@]}" --quiet >&2
fi
# rust-lld leaves its name in .comment ("Linker: LLD ...").
if readelf -p .comment "$bin" 2>/dev/null | grep -q 'LLD'; then
  # The names a build gives its functions do not depend on how it is linked, and with v0
  # mangling a change elsewhere leaves the names of unchanged functions as they were: the list
  # mapped on the last dist binary (even of older sources) orders this build. Mapped again on
  # the result; relinked only if that differs (a renamed or new function of the list): one
  # whole-program build in the usual case, none when nothing changed.
  order=$(map_list "$bin")
  ord_rustc "$order"
  again=$(map_list "$bin")
  if [ "$again" != "$order" ]; then
    ord_rustc "$again"
    order=$again
  fi
  echo "dist: $(wc -l <"$order") functions of bench/idle.order placed first" >&2
else
  echo "dist: the linker is not lld: building without the idle layout" >&2
  cargo build --profile dist -p uplink "${features[@]}" --quiet >&2
fi
echo "$bin"
