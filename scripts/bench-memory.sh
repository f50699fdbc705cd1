#!/usr/bin/env bash
# Benchmark, run on demand (not in CI): memory per pod (issue 10). Starts N one-container pods
# (busybox `sleep`, a shared PID namespace so each pod has a pod init) with crictl against a
# private daemon and prints the daemon's RSS idle and after, its growth per pod, the mean PSS of
# each shim and each pod init (/proc/PID/smaps_rollup), and pod start p50/p90 (wall time of one
# `crictl run`: RunPodSandbox + CreateContainer + StartContainer).
#
# Two columns in the same run, same build: "before" runs the daemon with no helper binaries
# beside it (shims and pod inits are the daemon re-executed, as before issue 10), "after" with
# kinglet-shim and kinglet-pod-init beside it.
#
# MODE=trim instead compares, with the helpers beside it, "keep" (trim-idle-secs = 0: never
# trims) and "trim" (the defaults: once idle 30 s the daemon drops its clean page mappings and
# trims its heap, see daemon/src/trim.rs).
# MODE=bins compares two builds, helpers beside both: "before" runs the three binaries of
# BEFORE_BIN, "after" those of BIN_DIR (e.g. a release build of the commit before a change;
# copy only the three binaries: BEFORE_BIN=/tmp/old; cp target/release/kinglet{,-shim,-pod-init}).
# ROUNDS=R (default 1) alternates the two columns R times (before, after, before, ...) to
# show the noise. With RESTART=bench_restart (tests/examples/bench_restart.rs, any build of it:
# a client), each column also prints restart latency p50 over RESTART_PODS (10) crashing pods.
#
# SETTLE=S (default 0: off) measures the idle daemon as it settles: after S seconds idle, VmRSS
# sampled every second for SAMPLE (60) seconds, max and mean, with 0 pods and again with the N
# pods; the first pod is then started after that idle period and reported apart ("first"),
# p50/p90 are over the others, started back to back (issue 10: SETTLE=40).
#
#   bash scripts/bench-memory.sh          N=30; BIN_DIR=target/release (built here)
#   NO_BUILD=1 MODE=bins BEFORE_BIN=/tmp/old BIN_DIR=target/release ROUNDS=2 \
#     RESTART=target/debug/examples/bench_restart bash scripts/bench-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
N=${N:-30}
BIN_DIR=${BIN_DIR:-target/release}
crictl=${CRICTL:-$(command -v crictl || echo "${SHARED_DIR:-$repo/../shared}/cri-tools/crictl")}
if [ "$(id -u)" != 0 ]; then echo "bench-memory.sh: run as root" >&2; exit 1; fi
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
fi
work=$(mktemp -d /tmp/kinglet-bench-mem.XXXXXX)
dpid=
flags=()
cleanup() {
  set +e
  stop_daemon
  rm -rf "$work"
}
stop_daemon() {
  if [ -n "$dpid" ]; then
    "$crictl" --config /dev/null -r "unix://${flags[1]}" rmp -fa >/dev/null 2>&1 || true
    kill "$dpid" 2>/dev/null || true
    wait "$dpid" 2>/dev/null || true
    dpid=
    "$work/bin/kinglet" reset --yes "${flags[@]}" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
bash tests/images/build-busybox-image.sh "$work/img" >/dev/null

kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# Mean PSS (KiB) of the processes whose command line has $1 and the run root $2; and their count.
mean_pss() {
  local sum=0 n=0 p
  for p in $(pgrep -f -- "$1.*$2"); do
    sum=$((sum + $(kb "$p" Pss))); n=$((n + 1))
  done
  echo "$n $((n ? sum / n : 0))"
}

# After SETTLE seconds idle, VmRSS (KiB) of $1 every second for SAMPLE seconds: "max mean".
settled_rss() {
  local i v max=0 sum=0 n=${SAMPLE:-60}
  sleep "$SETTLE"
  for i in $(seq "$n"); do
    v=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status")
    sum=$((sum + v)); [ "$v" -gt "$max" ] && max=$v
    sleep 1
  done
  awk -v m="$max" -v s="$sum" -v n="$n" 'BEGIN {printf "max %.1f mean %.1f MiB", m/1024, s/n/1024}'
}

run() {
  runs=$((runs + 1))
  local label=$1 d=$work/$1.$runs from=$BIN_DIR
  [ "${MODE:-}" = bins ] && [ "$label" = before ] && from=$BEFORE_BIN
  rm -rf "$work/bin"
  mkdir -p "$d/logs" "$work/bin"
  cp "$from/kinglet" "$work/bin/kinglet"
  if [ "$label" != before ] || [ "${MODE:-}" = bins ]; then
    cp "$from/kinglet-shim" "$from/kinglet-pod-init" "$work/bin/"
  fi
  flags=(--socket "$d/k.sock" --root "$d/root" --run-root "$d/run" --manifests "$d/manifests"
    --bridge kbmem0 --pod-cidr 10.233.0.0/16 --nft-table kbmem)
  if [ "$label" = keep ] || [ "$label" = trim ]; then
    [ "$label" = keep ] && echo "trim-idle-secs = 0" >"$d/config.toml"
    [ "$label" = trim ] && : >"$d/config.toml"
    flags+=(--config "$d/config.toml")
  fi
  "$work/bin/kinglet" daemon "${flags[@]}" >"$d/daemon.log" 2>&1 &
  dpid=$!
  local c=("$crictl" --config /dev/null -r "unix://$d/k.sock" -i "unix://$d/k.sock" --timeout 60s)
  for _ in $(seq 100); do "${c[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
  "$work/bin/kinglet" image import --socket "$d/k.sock" "$work/img/busybox.tar" >/dev/null
  sleep 5
  local idle idle_anon
  idle=$(kb "$dpid" Rss)
  idle_anon=$(kb "$dpid" Anonymous)
  local settled0="" settledn=""
  [ "${SETTLE:-0}" != 0 ] && settled0=$(settled_rss "$dpid")
  printf '{"metadata":{"name":"sleep"},"image":{"image":"kinglet.test/busybox:latest"},"command":["sleep","3600"],"log_path":"sleep.log"}' >"$d/ctr.json"
  local times=() i t0 t1
  for i in $(seq "$N"); do
    printf '{"metadata":{"name":"m%s","namespace":"bench","uid":"u%s"},"log_directory":"%s/logs/m%s","linux":{"security_context":{"namespace_options":{"pid":0}}}}' \
      "$i" "$i" "$d" "$i" >"$d/pod.json"
    t0=$(date +%s%N)
    "${c[@]}" run --no-pull "$d/ctr.json" "$d/pod.json" >/dev/null 2>"$d/crictl.err" || { cat "$d/crictl.err" >&2; exit 1; }
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
  done
  sleep 3
  local busy shims inits first=""
  busy=$(kb "$dpid" Rss)
  [ "${SETTLE:-0}" != 0 ] && { settledn=$(settled_rss "$dpid"); first=${times[0]}; times=("${times[@]:1}"); }
  shims=$(mean_pss "shim run" "$d/run")
  inits=$(mean_pss "pod-init" "$d/run")
  local p50 p90
  p50=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int(NR*0.5+0.5)]/1000}')
  p90=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int(NR*0.9+0.5)]/1000}')
  read -r ns shim_pss <<<"$shims"
  read -r ni init_pss <<<"$inits"
  awk -v l="$label" -v n="$N" -v idle="$idle" -v anon="$idle_anon" -v busy="$busy" -v ns="$ns" -v sp="$shim_pss" \
    -v ni="$ni" -v ip="$init_pss" -v p50="$p50" -v p90="$p90" 'BEGIN {
      growth = (busy - idle) / n / 1024
      printf "%-6s daemon RSS idle %.1f MiB (anon %.1f), after %d pods %.1f MiB (+%.2f MiB/pod); ", l, idle/1024, anon/1024, n, busy/1024, growth
      printf "shim PSS %.2f MiB (x%d); pod init PSS %.2f MiB (x%d); ", sp/1024, ns, ip/1024, ni
      printf "per pod %.2f MiB; pod start p50 %s ms p90 %s ms", growth + sp/1024 + ip/1024, p50, p90
    }'
  if [ -n "$first" ]; then
    printf '; first pod after idle %.1f ms; settled idle RSS, 0 pods: %s, %d pods: %s' "$(echo "$first / 1000" | bc -l)" "$settled0" "$N" "$settledn"
  fi
  if [ -n "${RESTART:-}" ]; then
    "${c[@]}" rmp -fa >/dev/null 2>&1 || true
    "$RESTART" --socket "$d/k.sock" --pods "${RESTART_PODS:-10}" |
      awk '/^RESULT kinglet_restart_p50_ms/ {printf "; restart p50 %s ms", $3}'
  fi
  echo
  stop_daemon
}
runs=0
columns=(before after)
[ "${MODE:-}" = trim ] && columns=(keep trim)
for _ in $(seq "${ROUNDS:-1}"); do
  for col in "${columns[@]}"; do run "$col"; done
done
