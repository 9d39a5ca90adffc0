#!/usr/bin/env bash
# Prints every function (text symbol) of an ELF binary as "address<TAB>mangled<TAB>key", in the
# symbol table's order: the names bench/idle.order is written in and matched by (bench/dist.sh,
# bench/idle-order.sh, packaging/build-deb.sh).
#
# The key is the demangled name without anything that changes when unrelated code does: with the
# v0 mangling the dist build uses (-C symbol-mangling-version=v0, bench/dist.sh), the demangled
# name is the full path of the instance, generic arguments and closure numbers included, without
# the crates' disambiguator hashes (which change with a crate's dependencies, features, versions
# and Cargo.lock: one new dependency renamed 16% of the list's functions on 2026-12-05). LLVM's
# ".llvm.NNN" suffixes (numbers from the LTO run) and legacy-mangling "::h<hash>" are cut too.
# Usage: bench/symbol-keys.sh BINARY
set -euo pipefail
bin=${1:?usage: bench/symbol-keys.sh BINARY}
paste -d '\t' <(nm -p --defined-only "$bin") <(nm -p -C --defined-only "$bin") |
  awk -F'\t' '{
    split($1, m, " "); if (m[2] !~ /^[tT]$/) next
    d = $2; sub(/^[0-9a-f]+ [a-zA-Z] /, "", d)
    sub(/\.llvm\.[0-9]+$/, "", d); sub(/::h[0-9a-f]{16}$/, "", d)
    print m[1] "\t" m[3] "\t" d }'
