#!/usr/bin/env bash
# Builds the binary to ship: the `dist` profile (root Cargo.toml), linked with the functions the
# idle sensor runs laid out together (bench/idle.order), so that the kernel maps fewer pages of
# code into a long-running sensor. Prints the binary's path on stdout.
#
# Why the layout matters: every page fault on the binary maps its aligned 64 KiB window (the
# kernel's fault-around), so the sensor's resident code is the number of windows the code it ran
# touches, times 64 KiB. In the default layout the ~1.9 MiB the idle sensor runs is scattered over
# 12 MiB of code: ~7 MiB resident. Laid out together: 3 MiB. See README "Benchmarks".
#
# How: lld's --symbol-ordering-file (rust-lld is the default linker of x86_64-unknown-linux-gnu
# since Rust 1.90; older toolchains link with cc and the GNU linker, which lacks that option: then
# this script says so and builds without it). bench/idle.order lists mangled names with their
# demangled names; the names a build has are matched exactly, else by demangled name without the
# hash (any instance of that function), so a list made by another toolchain or lock file still
# places the functions whose names did not change; names missing from the binary are ignored. How
# much of the gain survives depends on how much inlining changed: a list recorded on the release
# profile and applied to dist kept little of it (README). Regenerate it with bench/idle-order.sh
# after changing what the sensor runs at start-up or idle, and check with bench/idle.sh.
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

# The names this build gives its functions do not depend on how it is linked: an existing dist
# binary (even one linked without the list) is enough to map the list, which saves a second
# whole-program build when only the layout changes.
if [ ! -x "$bin" ]; then
  cargo build --profile dist -p uplink "${features[@]}" --quiet >&2
fi

link_args=()
linker_is_lld=false
# rust-lld leaves its name in .comment ("Linker: LLD ...").
if readelf -p .comment "$bin" 2>/dev/null | grep -q 'LLD'; then
  linker_is_lld=true
fi
if $linker_is_lld; then
  order_src=bench/idle.order
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  # Pair each symbol's mangled and demangled names (same table order: -p), keep the text ones
  # that the list names exactly or — for a name of the list this build lacks — by demangled name
  # without its hash. Only for those: a loose name matches every instance of a generic function
  # (and every crate's copy), and placing them all for names that were found exactly put 4.1 MiB
  # of code first instead of the list's 2.5 MiB.
  paste -d '\t' <(nm -p --defined-only "$bin") <(nm -p -C --defined-only "$bin") >"$tmp"
  awk -F'\t' -v list="$order_src" '
      BEGIN {
        while ((getline line < list) > 0) {
          if (line ~ /^#/ || line == "") continue
          split(line, f, "\t"); n++; exact[f[1]] = n; name[n] = f[2]
        }
      }
      # First pass: which names of the list this build has exactly.
      NR == FNR { split($1, m, " "); if (m[3] in exact) found[exact[m[3]]] = 1; next }
      FNR == 1 { for (i = 1; i <= n; i++) if (!(i in found) && !(name[i] in loose)) loose[name[i]] = i }
      {
        split($1, m, " "); if (m[2] !~ /^[tT]$/) next
        mangled = m[3]; d = $2; sub(/^[0-9a-f]+ [a-zA-Z] /, "", d); sub(/::h[0-9a-f]{16}$/, "", d)
        if (mangled in exact) print exact[mangled] "\t" mangled
        else if (d in loose) print loose[d] "\t" mangled
      }' "$tmp" "$tmp" | sort -n -s | cut -f2 >"$tmp.order"
  mv "$tmp.order" "$tmp"
  # The file name carries its content hash: cargo relinks when the arguments change.
  sum=$(sha256sum "$tmp" | cut -c1-16)
  order=$target/dist/idle-order-$sum.txt
  cp "$tmp" "$order"
  echo "dist: $(wc -l <"$order") functions of bench/idle.order placed first" >&2
  link_args+=(-C "link-arg=-Wl,--symbol-ordering-file=$order" -C "link-arg=-Wl,--no-warn-symbol-ordering")
else
  echo "dist: the linker is not lld: building without the idle layout" >&2
fi
if [ ${#link_args[@]} -gt 0 ]; then
  cargo rustc --profile dist -p uplink --bin uplink "${features[@]}" --quiet -- "${link_args[@]}" >&2
fi
echo "$bin"
