#!/usr/bin/env bash
# Allow-list benchmark: extract and aggregate one service tag from Microsoft's service-tags JSON
# (`uplink allowlist ips --tag T --aggregate`, whole process: start, read, parse, validate,
# aggregate, print), side by side with jq doing the plain extraction of the same tag, in one run.
# Two inputs: the real file (../shared/fixtures/servicetags/, ~4 MB, 3,002 tags) and a synthetic
# 10x file generated into a temporary directory (the real tags plus nine renamed copies of each).
# Runs alternate uplink and jq so both see the same machine state; prints the medians and the
# ratio. Target: uplink's median on the real file at most 50 ms.
#
# Needs jq and python3. Usage: bench/allowlist.sh [RUNS] [TAG]   (default 21 runs, AzureAdvancedThreatProtection)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-21}
tag=${2:-AzureAdvancedThreatProtection}
for p in jq python3; do command -v "$p" >/dev/null || { echo "bench/allowlist.sh: $p is missing (apt-get install jq python3)"; exit 2; }; done
real=../shared/fixtures/servicetags/ServiceTags_Public_cn370_20250911.json
[ -f "$real" ] || { echo "bench/allowlist.sh: $real is missing (clone the repository next to shared/)"; exit 2; }

cargo build --release --quiet -p uplink
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/uplink
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$real" "$tmp/ServiceTags_10x.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
orig = doc["values"]
copies = []
for i in range(1, 10):
    for t in orig:
        c = json.loads(json.dumps(t))
        c["name"] = c["id"] = "Synthetic%d%s" % (i, t["name"])
        copies.append(c)
doc["values"] = orig + copies
json.dump(doc, open(sys.argv[2], "w"), indent=2)
PY

python3 - "$bin" "$tag" "$runs" "$real" "$tmp/ServiceTags_10x.json" <<'PY'
import os, statistics, subprocess, sys, time
bin, tag, runs, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
jq_filter = '.values[] | select(.name == "%s") | .properties.addressPrefixes[]' % tag
for f in files:
    size = os.path.getsize(f) / 1e6
    ours = [bin, "allowlist", "ips", "--service-tags", f, "--tag", tag, "--aggregate"]
    jq = ["jq", "-r", jq_filter, f]
    # The same extraction, checked once: uplink without --aggregate prints what jq prints.
    plain = subprocess.run(ours[:-1], capture_output=True, check=True).stdout
    if plain != subprocess.run(jq, capture_output=True, check=True).stdout:
        sys.exit("bench: uplink and jq disagree on %s" % f)
    n_agg = subprocess.run(ours, capture_output=True, check=True).stdout.count(b"\n")
    times = {"uplink": [], "jq": []}
    for _ in range(2):  # warm the page cache
        subprocess.run(ours, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(jq, stdout=subprocess.DEVNULL, check=True)
    for _ in range(runs):
        for name, cmd in (("uplink", ours), ("jq", jq)):
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - t0) * 1000)
    u, j = statistics.median(times["uplink"]), statistics.median(times["jq"])
    print("%-28s %6.1f MB  %s: %d prefixes, %d aggregated" % (os.path.basename(f), size, tag, plain.count(b"\n"), n_agg))
    print("  uplink ips --aggregate  median %7.1f ms  (min %.1f, max %.1f, %d runs)" % (u, min(times["uplink"]), max(times["uplink"]), runs))
    print("  jq (extraction only)    median %7.1f ms  (min %.1f, max %.1f, %d runs)" % (j, min(times["jq"]), max(times["jq"]), runs))
    print("  ratio jq/uplink         %7.1fx" % (j / u))
    if f == files[0]:
        print("  target <= 50 ms on the real file: %s" % ("met" if u <= 50 else "MISSED"))
PY
