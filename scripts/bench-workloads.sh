#!/usr/bin/env bash
# Workload controller measures, run on demand (not in CI), printing their figures:
# - CronJob schedule precision: CRON_BENCH_JOBS CronJobs (default 10) every minute for
#   CRON_BENCH_MINUTES (default 3); how long after the scheduled minute each Job was created
#   (p50/p99/max, from the controller's log) and its startTime (p50/p99, 1 s resolution).
# - Job at scale: KINGLET_JOB_BENCH_COMPLETIONS (default 1000) completions, parallelism 10,
#   pods of `true`, against a release build of the daemon: total time, completions/s per 100
#   completions, the daemon's RSS (start, peak, end, after the Job's pods are gone) and CPU,
#   and the host's load average. With BEFORE_BIN (a release `kinglet` with its
#   `kinglet-shim` and `kinglet-pod-init` beside it, e.g. main's build copied aside), that
#   binary runs the same Job first and the two are printed side by side (after/before ratio
#   of the time per 100 completions). KINGLET_JOB_BENCH_SECS caps each run.
#
# Usage: scripts/bench-workloads.sh [cron|job]   (as root; both when no argument)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
if [ "$which" = all ] || [ "$which" = cron ]; then
    cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
    cargo test -p kinglet-tests --test cronjob -- --ignored --nocapture bench_ 2>&1 | grep MEASURE
fi
if [ "$which" = all ] || [ "$which" = job ]; then
    nice cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
    nice cargo test -p kinglet-tests --test job_bench --no-run
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "$(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
    run_job() { # label binary
        echo "== $1: $2"
        KINGLET_BIN=$2 KINGLET_JOB_BENCH_OUT="$work/$1.tsv" \
            cargo test -p kinglet-tests --test job_bench -- --ignored --nocapture job_of_many 2>&1 |
            grep FIGURE || true
    }
    [ -z "${BEFORE_BIN:-}" ] || run_job before "$BEFORE_BIN"
    run_job after "$PWD/target/release/kinglet"
    if [ -n "${BEFORE_BIN:-}" ] && [ -s "$work/before.tsv" ] && [ -s "$work/after.tsv" ]; then
        echo "== side by side (before: $BEFORE_BIN)"
        printf '%-22s %12s %12s %8s\n' figure before after ratio
        join -t $'\t' -a 1 -e - -o 0,1.2,2.2 \
            <(grep -v ^per100_ "$work/before.tsv" | sort -t $'\t' -k1,1) \
            <(grep -v ^per100_ "$work/after.tsv" | sort -t $'\t' -k1,1) |
            awk -F'\t' '{ printf "%-22s %12s %12s %8s\n", $1, $2, $3,
                ($2 > 0 && $3 != "-") ? sprintf("%.2f", $3 / $2) : "-" }'
        echo "per 100 completions: seconds, completions/s, RSS MiB, daemon CPU % (before | after)"
        join -t $'\t' -a 1 -a 2 -e - -o 0,1.3,1.4,1.5,1.6,2.3,2.4,2.5,2.6 \
            <(grep ^per100_ "$work/before.tsv" | sort -t $'\t' -k1,1) \
            <(grep ^per100_ "$work/after.tsv" | sort -t $'\t' -k1,1) |
            awk -F'\t' '{ sub("per100_0*", "", $1);
                printf "%6s  %6ss %6s/s %5sMiB %4s%% | %6ss %6s/s %5sMiB %4s%%\n",
                    $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
    fi
fi
