#!/usr/bin/env bash
# The whole test suite, as CI runs it (root; fresh Debian 12 with Rust installed):
# install packages, check formatting and lints, build, run every test, print a total.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh test
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked  # tests/tests/deb_package.rs
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked  # scripts/fuzz.sh (stable)
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features kinglet-tests/vm -- -D warnings
cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
log=$(mktemp)
conf_log=$(mktemp)
fuzz_log=$(mktemp)
before=$(mktemp)
trap 'rm -f "$log" "$conf_log" "$fuzz_log" "$before"' EXIT
bash scripts/check-leaks.sh snapshot "$before"
set +e
cargo test --workspace --all-targets --no-fail-fast --features kinglet-tests/vm 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# CRI conformance: the upstream critest suite against a fresh daemon (scripts/conformance.sh).
bash scripts/conformance.sh 2>&1 | tee "$conf_log"
conf_rc=${PIPESTATUS[0]}
# Every fuzz target builds and runs FUZZ_SECONDS (default 20) from its seeds; a finding fails.
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1 | tee "$fuzz_log"
fuzz_rc=${PIPESTATUS[0]}
set -e
# Closing lines: critest's own totals and verdict, then the totals over every test binary.
grep -E '^(Ran [0-9]+ of [0-9]+ Specs|(SUCCESS|FAIL)! -- |conformance: )' "$conf_log" | tail -3 |
  sed 's/^/critest: /' || true
grep -E '^[a-z_]+ +[0-9?]+ executions in' "$fuzz_log" | sed 's/^/fuzz: /' || true
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
# The suite cleans up after itself: no process, directory, bridge or table of it is left.
if ! bash scripts/check-leaks.sh check "$before"; then
  echo "scripts/check-leaks.sh: the test suite left something behind" >&2
  [ "$rc" = 0 ] && rc=1
fi
if [ "$rc" != 0 ]; then exit "$rc"; fi
if [ "$fuzz_rc" != 0 ]; then exit "$fuzz_rc"; fi
exit "$conf_rc"
