#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine with Rust installed:
# installs the Debian packages the tests start (only those missing), then runs formatting and lint
# checks and every test. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")"

# Programs the integration tests run as real peers. Each test fails loudly if one is missing.
# krb5-user brings the GSSAPI library Negotiate loads at run time (nothing to build it with: no
# libkrb5-dev or libclang-dev). postgresql: the PostgreSQL store's tests make private
# clusters with its initdb (as the postgres user when run as root). haproxy: the replicas' load balancer (tests/it/replicas.rs).
# systemd-container: systemd-nspawn boots the container of tests/it/package_systemd.rs.
packages=(curl openssl ca-certificates iproute2 procps squid tinyproxy nftables python3-pacparser jq dnsmasq-base systemd mitmproxy krb5-kdc krb5-admin-server krb5-user microsocks isc-dhcp-client network-manager dbus-daemon systemd-journal-remote postgresql haproxy lintian dpkg-dev prometheus rsyslog rsyslog-openssl chromium chromium-driver systemd-container)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches axe-core (below): Debian's package only where no npm is installed (a machine with
# Node.js from elsewhere must not get Debian's, which conflicts with it).
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# axe-core, injected by the console's browser tests (tests/it/console.rs) to check accessibility.
[ -f target/npm/node_modules/axe-core/axe.min.js ] || npm install --prefix target/npm --no-audit --no-fund axe-core@4

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The closing line is printed whether or not tests failed (set -e would stop before it).
summary() { awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}' "$log"; }
status=0
cargo test --workspace --all-features --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  # A test binary that failed to build or crashed reports no result line: count it as a failure.
  summary | awk '{ if ($3 == 0) $3 = 1; print $1, $2, $3, $4 }'
  exit "$status"
fi

# Fuzz targets (parsers of untrusted bytes), each for a bounded time. FUZZ_SECONDS=0 skips them
# locally; CI always runs them.
if [ "${CI:-}" = "true" ] || [ "${FUZZ_SECONDS:-15}" != "0" ]; then
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  FUZZ_SECONDS=${FUZZ_SECONDS:-15} fuzz/run.sh
fi

# One closing line for the whole suite.
summary
