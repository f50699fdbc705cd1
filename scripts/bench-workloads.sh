#!/usr/bin/env bash
# Workload controller measures, run on demand (not in CI), printing their figures:
# - CronJob schedule precision: CRON_BENCH_JOBS CronJobs (default 10) every minute for
#   CRON_BENCH_MINUTES (default 3); how long after the scheduled minute each Job was created
#   (p50/p99/max, from the controller's log) and its startTime (p50/p99, 1 s resolution).
# - Job at scale: KINGLET_JOB_BENCH_COMPLETIONS (default 1000) completions, parallelism 10,
#   pods of `true`: completions/s, and by tenths of the run the completion rate, the daemon's
#   RSS and CPU (flat when a pass costs O(active pods), not O(finished pods)).
#
# Usage: scripts/bench-workloads.sh [cron|job]   (as root; a debug build of the daemon; both
# when no argument)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
if [ "$which" = all ] || [ "$which" = cron ]; then
    cargo test -p kinglet-tests --test cronjob -- --ignored --nocapture bench_ 2>&1 | grep MEASURE
fi
if [ "$which" = all ] || [ "$which" = job ]; then
    cargo test -p kinglet-tests --test job_bench -- --ignored --nocapture job_of_many 2>&1 | grep FIGURE
fi
