#!/usr/bin/env bash
# Benchmark, run on demand (not in CI): cluster DNS queries/s and latency p50/p99 for cluster
# names against a real test daemon (4 closed-loop UDP clients on the host, 5 s), the count of
# queries that reached a fake upstream meanwhile (must be 0), and the endpoint change → DNS
# record set latency p50/p99 (20 selector changes). Needs root. See tests/tests/bench_dns.rs.
# RELEASE=1 measures an optimized daemon (the default is the debug build the tests use).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "bench-dns.sh: run as root" >&2; exit 1; fi
if [ "${RELEASE:-}" = 1 ]; then
  cargo build -q --release -p kinglet
  export KINGLET_BIN=$PWD/target/release/kinglet
else
  cargo build -q -p kinglet
fi
nice cargo test -q -p kinglet-tests --test bench_dns -- --ignored --nocapture 2>&1 |
  grep -E '^(cluster DNS|endpoint change)|panicked|test result'
