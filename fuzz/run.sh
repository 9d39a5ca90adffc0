#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 20 s each; FUZZ_SECONDS to change).
# Uses cargo-fuzz on stable Rust: RUSTC_BOOTSTRAP=1 for the -Z flags, and `-s none` (no sanitizer:
# the code is #![forbid(unsafe_code)] but for crates/bytescan's bounded SSE2 loads, and the point is
# panics, hangs and the differential asserts). A crash fails the run and leaves the input in
# fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-20}
export RUSTC_BOOTSTRAP=1
seconds=$(( seconds > 0 ? seconds : 15 ))
targets=$(cargo fuzz list)
# One build for all targets; its errors are shown if it fails.
cargo fuzz build -s none -O
for t in $targets; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  cargo fuzz run -s none -O "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
done
echo "fuzz: all targets ran ${seconds}s without a crash"
