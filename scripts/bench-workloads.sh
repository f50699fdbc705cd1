#!/usr/bin/env bash
# Workload controller measures, run on demand (not in CI), printing their figures:
# - CronJob schedule precision: CRON_BENCH_JOBS CronJobs (default 10) every minute for
#   CRON_BENCH_MINUTES (default 3); how long after the scheduled minute each Job was created
#   (p50/p99/max, from the controller's log) and its startTime (p50/p99, 1 s resolution).
#
# Usage: scripts/bench-workloads.sh   (as root; a debug build of the daemon)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
cargo test -p kinglet-tests --test cronjob -- --ignored --nocapture bench_ 2>&1 | grep MEASURE
