#!/usr/bin/env bash
# Log flood, run on demand (not pass/fail in CI): a container writes `yes` output to stdout as
# fast as it can for SECS seconds (default 60) while another pod logs 5 lines a second. Prints
# the daemon's and the flooding shim's CPU % and peak RSS, the log files and bytes kept against
# the rotation limits (1 MiB x 3 in the test), and the quiet pod's line count. The same test
# runs for 10 s in CI (tests/tests/log_flood.rs), where it asserts the limits and the lines.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-60}
KINGLET_FLOOD_SECS=$SECS nice cargo test -p kinglet-tests --test log_flood -- --nocapture 2>&1 |
  grep -E "^log flood|test result|panicked|assert"
