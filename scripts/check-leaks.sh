#!/usr/bin/env bash
# Whether the test suite left something behind: a kinglet process (daemon, shim, pod init, exec
# helper) of this checkout's binaries, a test daemon directory or test image in the temporary
# directory, a test bridge or nftables table.
#
#   check-leaks.sh snapshot FILE   record what is there before the suite
#   check-leaks.sh check FILE      print what is there now and was not before; exit 1 if any
#
# (Comparing with a snapshot keeps whatever else runs on the machine out of the verdict; on CI
# nothing else runs, and the snapshot is empty.)
set -uo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(pwd)/target
inventory() {
  for p in $(pgrep -f "^$bin_dir/(debug|release)/kinglet " || true); do
    echo "process: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null) (pid $p)"
  done
  for d in "${TMPDIR:-/tmp}"/kinglet-e2e-* "${TMPDIR:-/tmp}"/kinglet-test-image-*; do
    [ -e "$d" ] && echo "temporary directory: $d"
  done
  ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^kt[0-9]+x[0-9]+$' | sed 's/^/bridge: /'
  nft list tables 2>/dev/null | awk '$2 == "ip" && $3 ~ /^kt_[0-9]+_[0-9]+(_svc)?$/ {print "nftables table: ip " $3}'
  true
}
case "${1:-}" in
  snapshot) inventory | sort > "$2" ;;
  check)
    new=$(inventory | sort | comm -13 "$2" -)
    if [ -n "$new" ]; then
      echo "$new" | sed 's/^/left behind: /'
      exit 1
    fi
    echo "check-leaks: nothing left behind"
    ;;
  *) echo "usage: $0 snapshot|check FILE" >&2; exit 2 ;;
esac
