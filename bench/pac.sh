#!/usr/bin/env bash
# PAC evaluations per second: uplink (QuickJS, crates/pac) against pacparser (C on SpiderMonkey,
# Debian's python3-pacparser) in one run, on the same script and the same URL list.
#
#   bench/pac.sh [PAC] [N]     defaults: shared/fixtures/pac/large/enterprise-large.pac, 200000
#
# Both sides load the script once and then evaluate FindProxyForURL N times over a deterministic
# list of URLs (bypass-list hosts, rule hosts, unknown hosts, IP literals). uplink's figure is
# measured through `uplink proxy pac --urls` (process start and compile included, which N makes
# negligible); pacparser's through its Python binding (a Python loop, as its users call it). Both
# outputs are compared line by line first, so the figures compare equal work.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pac=${1:-$here/../shared/fixtures/pac/large/enterprise-large.pac}
n=${2:-200000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
cargo build --release -q -p uplink --manifest-path "$here/Cargo.toml"
uplink=$CARGO_TARGET_DIR/release/uplink
/usr/bin/python3 -c 'import pacparser' 2>/dev/null || { echo "pac.sh: python3-pacparser is not installed (apt-get install python3-pacparser)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The URL list: deterministic (seeded), N lines.
/usr/bin/python3 - "$pac" "$n" "$work/urls.txt" <<'PY'
import random, re, sys
pac, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
src = open(pac).read()
bypass = re.findall(r'^\s*"([a-z0-9.-]+)": 1', src, re.M)
rules = re.findall(r"'(\.?[a-z0-9.-]+\.[a-z]+)'", src)
rng = random.Random(42)
hosts = []
for _ in range(2000):
    k = rng.random()
    if k < 0.3 and bypass:
        hosts.append(rng.choice(["", "www.", "app."]) + rng.choice(bypass))
    elif k < 0.6 and rules:
        hosts.append("x" + rng.choice(rules) if rng.random() < 0.5 else rng.choice(rules).lstrip("."))
    elif k < 0.8:
        hosts.append("%d.%d.%d.%d" % tuple(rng.randrange(1, 255) for _ in range(4)))
    elif k < 0.85:
        hosts.append(rng.choice(["intranet", "localhost", "printer"]))
    else:
        hosts.append("site%d.example.%s" % (rng.randrange(100000), rng.choice(["com", "org", "net"])))
with open(out, "w") as f:
    for i in range(n):
        h = hosts[i % len(hosts)]
        f.write("%s://%s/%s\n" % (rng.choice(["http", "https"]), h, "p%d" % (i % 97)))
PY

# uplink
start=$(date +%s.%N)
"$uplink" proxy pac --pac "$pac" --urls "$work/urls.txt" --now 2024-03-04T10:00:00+00:00 --my-ip 10.0.0.1 >"$work/uplink.out"
end=$(date +%s.%N)
uplink_rate=$(/usr/bin/python3 -c "print(round($n / ($end - $start)))")

# pacparser (same URLs; hosts derived the same way: lower-cased, no brackets)
pp_rate=$(/usr/bin/python3 - "$pac" "$work/urls.txt" "$work/pacparser.out" <<'PY'
import sys, time
import pacparser
pac, urls, out = sys.argv[1:4]
pacparser.init()
pacparser.parse_pac_file(pac)
lines = [u for u in open(urls).read().split("\n") if u]
hosts = [u.split("://", 1)[1].split("/", 1)[0].lower() for u in lines]
start = time.perf_counter()
results = [pacparser.find_proxy(u, h) for u, h in zip(lines, hosts)]
elapsed = time.perf_counter() - start
open(out, "w").write("\n".join(results) + "\n")
print(round(len(lines) / elapsed))
PY
)

if ! cmp -s "$work/uplink.out" "$work/pacparser.out"; then
  echo "pac.sh: uplink and pacparser disagree on some URLs:" >&2
  diff <(paste -d' ' "$work/urls.txt" "$work/uplink.out") <(paste -d' ' "$work/urls.txt" "$work/pacparser.out") | head -20 >&2
  exit 1
fi
ratio=$(/usr/bin/python3 -c "print('%.2f' % ($uplink_rate / $pp_rate))")
echo "pac bench: $(basename "$pac"), $n URLs, identical results"
echo "  uplink     $uplink_rate evals/s"
echo "  pacparser  $pp_rate evals/s"
echo "  ratio      ${ratio}x (target >= 2x)"
