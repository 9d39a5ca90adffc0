#!/usr/bin/env bash
# Builds the uplink Debian package: target/debian/uplink_VERSION-REVISION_amd64.deb (and, with
# --tarball, target/debian/uplink-VERSION-x86_64-linux-gnu.tar.gz for other distributions).
#
# Made with dpkg-deb from a staging tree this script lays out, not cargo-deb: cargo-deb is one
# more tool to build from source on every CI machine (minutes on two cores), while dpkg-deb is
# already on every Debian system; the package needs its own maintainer scripts, users and
# generated files anyway, and the layout is short enough to read here whole.
#
# The binary, by default, is the one to ship: the `dist` profile linked with the idle layout
# (bench/dist.sh, bench/idle.order). The layout is verified on every build: when fewer than
# MIN_FOUND percent of the list's functions are in the binary by name (bench/symbol-keys.sh: v0
# demangled names without the crates' hashes, which unrelated changes leave alone), the list has
# drifted and the build fails, naming bench/idle-order.sh to regenerate it. What it cannot see: new functions on the
# idle path under old names; bench/idle.sh on the packaged binary measures the result. `--profile release`
# builds a quick package for CI (no LTO across the whole program, no layout).
#
# Usage: packaging/build-deb.sh [--profile dist|release] [--revision N] [--version V] [--tarball]
#   --revision N   Debian revision (default 1)
#   --version V    package version instead of the workspace's (tests build a lower version with it)
#   --tarball      also write the tarball for other distributions
# Honors CARGO_TARGET_DIR. Prints the paths it wrote on stdout; progress on stderr.
# Needs: cargo, dpkg-deb, dpkg-shlibdeps (dpkg-dev), python3, gzip, strip (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

profile=dist
revision=1
version=
tarball=false
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs dist or release}; shift 2 ;;
    --revision) revision=${2?--revision needs a value}; shift 2 ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --tarball) tarball=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in dist|release) ;; *) echo "build-deb.sh: --profile is dist or release, not $profile" >&2; exit 2 ;; esac
for tool in cargo dpkg-deb dpkg-shlibdeps python3 gzip strip; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing (apt-get install dpkg-dev binutils python3)" >&2; exit 1; }
done

# The package's features: Negotiate/Kerberos proxy authentication (corporate proxies), through
# the system's GSSAPI library, loaded when a proxy first asks for Negotiate (crates/gssapi): not
# linked, so dpkg-shlibdeps cannot see it and the control file names it (libgssapi-krb5-2).
features=kerberos
# Least share (%) of bench/idle.order's functions a dist build must have, by name
# (bench/symbol-keys.sh): below it the list describes another program and must be regenerated.
# 95: the names are stable across unrelated changes (they were not, with exact mangled names: one
# new dependency of the uplink crate renamed 16% of them and the idle sensor went from 8.8 to
# 11.6 MiB, 2026-12-05).
MIN_FOUND=${MIN_FOUND:-95}

target=${CARGO_TARGET_DIR:-$PWD/target}
meta=$(cargo metadata --format-version 1 --locked --features "$features" --filter-platform x86_64-unknown-linux-gnu)
upstream=$(python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="uplink" and p["source"] is None))' <<<"$meta")
version=${version:-$upstream}
pkgversion=$version${revision:+-$revision}

if [ "$profile" = dist ]; then
  log=$(mktemp)
  bin=$(UPLINK_FEATURES=$features bench/dist.sh 2> >(tee "$log" >&2))
  if grep -q 'the linker is not lld' "$log"; then
    rm -f "$log"
    echo "build-deb.sh: bench/dist.sh built without the idle layout (the linker is not lld): refusing to package a binary the README's idle figure does not describe; use --profile release for a test package" >&2
    exit 1
  fi
  rm -f "$log"
  # The list names functions by a key that unrelated changes leave alone (bench/symbol-keys.sh:
  # the v0 demangled name without the crates' hashes), so what is left to catch is a list of
  # another program: functions renamed, removed or no longer on the idle path. Count the list's
  # keys this binary has (and, for the record, its exact mangled names).
  read -r found exact listed < <(bench/symbol-keys.sh "$bin" | awk -F'\t' -v list=bench/idle.order '
      BEGIN {
        while ((getline line < list) > 0) {
          if (line ~ /^#/ || line == "") continue
          split(line, f, "\t"); if (!(f[2] in key)) n++; key[f[2]] = 1; mangled[f[1]] = 1
        }
      }
      { if ($3 in key && !($3 in seen)) { seen[$3] = 1; found++ } if ($2 in mangled) exact++ }
      END { print found + 0, exact + 0, n + 0 }')
  if [ $((found * 100)) -lt $((listed * MIN_FOUND)) ]; then
    echo "build-deb.sh: only $found of the $listed functions of bench/idle.order are in this build (under $MIN_FOUND%): the layout describes another program and has drifted. Regenerate it: UPLINK_FEATURES=$features bench/idle-order.sh, check with BIN=target/dist/uplink bench/idle.sh, and commit bench/idle.order" >&2
    exit 1
  fi
  echo "build-deb.sh: idle layout verified: $found of the $listed functions of bench/idle.order found by name ($exact by their exact mangled names)" >&2
else
  cargo build --profile "$profile" -p uplink --features "$features" --locked >&2
  bin=$target/$profile/uplink
fi

out=$target/debian
stage=$out/stage-$pkgversion
rm -rf "$stage"
mkdir -p "$out"
trap 'rm -rf "$stage" "$out/gen-$pkgversion" "$out/shlibdeps-$pkgversion"' EXIT
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/default" \
  "$stage/usr/share/doc/uplink" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d"
# As dh_strip does: the symbols and debug sections are never mapped, the package is 5x smaller.
strip --remove-section=.comment --remove-section=.note --strip-unneeded -o "$stage/usr/bin/uplink" "$bin"
chmod 0755 "$stage/usr/bin/uplink"
install -m 0644 packaging/debian/uplink-sensor.service packaging/debian/uplink-service.service "$stage/lib/systemd/system/"
install -m 0600 packaging/debian/uplink-service.default "$stage/etc/default/uplink-service"

# Man pages and completions, from the CLI of the binary being packaged.
gen=$out/gen-$pkgversion
rm -rf "$gen"
"$stage/usr/bin/uplink" generate --out "$gen" >&2
for page in "$gen"/man/*.1; do
  gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
install -m 0644 "$gen/completions/uplink" "$stage/usr/share/bash-completion/completions/uplink"
install -m 0644 "$gen/completions/_uplink" "$stage/usr/share/zsh/vendor-completions/_uplink"
install -m 0644 "$gen/completions/uplink.fish" "$stage/usr/share/fish/vendor_completions.d/uplink.fish"

# Changelog (a version given with --version gets an entry of its own) and copyright.
{
  if [ "$version" != "$upstream" ]; then
    printf 'uplink (%s) unstable; urgency=medium\n\n  * Built with --version %s.\n\n -- uplink maintainers <uplink@example.invalid>  %s\n\n' \
      "$pkgversion" "$version" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
  fi
  cat packaging/changelog
} | gzip -9n >"$stage/usr/share/doc/uplink/changelog.Debian.gz"
python3 packaging/copyright.py "$features" <<<"$meta" >"$stage/usr/share/doc/uplink/copyright"
chmod 0644 "$stage/usr/share/doc/uplink/"*

# Shared-library dependencies, as dh_shlibdeps finds them.
shl=$out/shlibdeps-$pkgversion
rm -rf "$shl"
mkdir -p "$shl/debian"
printf 'Source: uplink\n\nPackage: uplink\nArchitecture: amd64\n' >"$shl/debian/control"
depends=$(cd "$shl" && dpkg-shlibdeps -O "$stage/usr/bin/uplink" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
echo /etc/default/uplink-service >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: uplink
Version: $pkgversion
Architecture: amd64
Maintainer: uplink maintainers <uplink@example.invalid>
Installed-Size: $size
Depends: adduser, libgssapi-krb5-2, $depends
Section: net
Priority: optional
Homepage: https://example.invalid/uplink
Description: security event sensor and its cloud service, through corporate proxies
 uplink ships a sensor's events to its cloud service through corporate
 networks: proxies with NTLM, Kerberos, PAC and WPAD, allow-listing firewalls
 and TLS-inspecting middleboxes.
 .
 This package holds the one binary (sensor, service and admin tools), the
 hardened systemd units uplink-sensor.service and uplink-service.service, and
 their system users. Nothing starts until configured: "uplink sensor install"
 enables the sensor, and the service is enabled once /etc/default/uplink-service
 is set.
CONTROL
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

deb=$out/uplink_${pkgversion}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"

if $tarball; then
  name=uplink-$version-x86_64-linux-gnu
  tdir=$out/$name
  rm -rf "$tdir"
  install -d "$tdir/bin" "$tdir/systemd" "$tdir/man/man1" "$tdir/completions"
  cp -a "$stage/usr/bin/uplink" "$tdir/bin/"
  cp -a "$stage/lib/systemd/system/"*.service "$tdir/systemd/"
  install -m 0644 packaging/debian/uplink-service.default "$tdir/systemd/uplink-service.default"
  cp -a "$stage/usr/share/man/man1/"*.gz "$tdir/man/man1/"
  cp -a "$gen/completions/." "$tdir/completions/"
  cp -a "$stage/usr/share/doc/uplink/copyright" "$tdir/COPYRIGHT"
  install -m 0644 packaging/INSTALL.md "$tdir/INSTALL.md"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$out" -czf "$out/$name.tar.gz" "$name"
  rm -rf "$tdir"
  echo "$out/$name.tar.gz"
fi
