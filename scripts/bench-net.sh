#!/usr/bin/env bash
# Pod network benchmark, run on demand (not in CI), as root: setup + teardown latency per pod,
# p50 and p99 over N pods (default 100), built-in network (bridge, veth, IPAM, one hostPort in
# Kinglet's nftables table) vs the CNI bridge path (Debian's bridge + host-local + portmap), in the
# same run. Uses its own bridges (kbench0, kbenchc0), CIDRs (10.212/16, 10.211/16) and table.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100}
bash scripts/setup-debian.sh
cargo build --release --example bench_net -p kinglet-tests
"${CARGO_TARGET_DIR:-target}/release/examples/bench_net" --pods "$N"
