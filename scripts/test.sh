#!/usr/bin/env bash
# The whole test suite, as CI runs it (root; fresh Debian 12 with Rust installed):
# install packages, check formatting and lints, build, run every test, print a total.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features kinglet-tests/vm -- -D warnings
cargo build --bin kinglet
log=$(mktemp)
before=$(mktemp)
trap 'rm -f "$log" "$before"' EXIT
bash scripts/check-leaks.sh snapshot "$before"
set +e
cargo test --workspace --all-targets --features kinglet-tests/vm 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line with the totals over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
# The suite cleans up after itself: no process, directory, bridge or table of it is left.
if ! bash scripts/check-leaks.sh check "$before"; then
  echo "scripts/check-leaks.sh: the test suite left something behind" >&2
  [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
