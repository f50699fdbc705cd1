#!/usr/bin/env bash
# After the test suite: nothing it started may be left — no kinglet process (daemon, shim,
# pod init, exec helper) of this checkout's binaries, no test daemon directory, bridge or
# nftables table. Prints what is left and exits 1 if anything is.
set -uo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(pwd)/target
left=0
for p in $(pgrep -f "^$bin_dir/(debug|release)/kinglet " || true); do
  echo "left running: $p $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)"
  left=1
done
for d in "${TMPDIR:-/tmp}"/kinglet-e2e-* "${TMPDIR:-/tmp}"/kinglet-test-image-*; do
  [ -e "$d" ] || continue
  echo "left in the temporary directory: $d"
  left=1
done
for l in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^kt[0-9]+x[0-9]+$' || true); do
  echo "left bridge: $l"
  left=1
done
for t in $(nft list tables 2>/dev/null | awk '$2 == "ip" && $3 ~ /^kt_[0-9]+_[0-9]+$/ {print $3}'); do
  echo "left nftables table: ip $t"
  left=1
done
if [ "$left" = 0 ]; then echo "check-leaks: nothing left behind"; fi
exit "$left"
