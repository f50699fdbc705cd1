#!/usr/bin/env bash
# Fuzz every parser of outside input with cargo-fuzz (libFuzzer; fuzz/ is its own workspace).
# Each target starts from its seed corpus in
# fuzz/seeds/<target> (kept in the repo) plus what earlier runs found (fuzz/corpus/<target>,
# not kept), runs for SECONDS, and the closing table lists executions and findings per target.
# A finding (crash, panic, leak, timeout) is saved under fuzz/artifacts/<target>/ and makes the
# script exit 1.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   (default 60 s, every target)
#   FUZZ_BUILD_ONLY=1 scripts/fuzz.sh       only build the targets
#
# Needs `cargo install cargo-fuzz --locked` and a C++ compiler (libFuzzer is built from source).
# The stable toolchain does: without a sanitizer, cargo-fuzz passes rustc only stable flags
# (-Cpasses=sancov-module, -Cllvm-args=...). FUZZ_TOOLCHAIN=+nightly picks another toolchain.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
tc=${FUZZ_TOOLCHAIN:-}
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo $tc fuzz list)
fi
# Unoptimized-but-quick builds (the fuzz workspace's dev profile is opt-level 1), no sanitizer:
# the code is safe Rust; overflow and debug assertions are on.
flags=(--dev --sanitizer none)
nice cargo $tc fuzz build "${flags[@]}"
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then
  echo "fuzz: ${#targets[@]} targets built"
  exit 0
fi
summary=()
rc=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  set +e
  nice cargo $tc fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1
  code=$?
  set -e
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
  if [ "$code" = 0 ]; then
    verdict="no finding"
  else
    verdict="FINDING (exit $code): $(ls "artifacts/$t" 2>/dev/null | tail -1)"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -3 >&2 || true
    rc=1
  fi
  summary+=("$(printf '%-14s %10s executions in %ss, coverage %s: %s' "$t" "${runs:-?}" "$secs" "${cov:-?}" "$verdict")")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit $rc
