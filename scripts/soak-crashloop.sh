#!/usr/bin/env bash
# Soak, run on demand (not in CI): PODS pods whose container exits at once, for MINUTES
# minutes, under the configured CrashLoopBackOff (short constants by default so that the loop
# is busy: 1 s doubling to 10 s). Samples the daemon's memory (RSS, PSS), CPU and open file
# descriptors every INTERVAL seconds, and the total restarts; prints a table and the end/start
# ratios. With the back-off holding, memory and CPU stay flat however long it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
PODS=${PODS:-10}
INTERVAL=${INTERVAL:-60}
INITIAL_MS=${INITIAL_MS:-1000}
MAX_MS=${MAX_MS:-10000}
bash scripts/setup-debian.sh >/dev/null
cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
k=target/release/kinglet
work=$(mktemp -d /tmp/kinglet-soak.XXXXXX)
cleanup() {
  if [ -n "${dpid:-}" ]; then
    $k delete -f "$work/pods.yaml" --socket "$work/k.sock" >/dev/null 2>&1 || true
    sleep 3
    kill "$dpid" 2>/dev/null || true
  fi
  sleep 0.5
  awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
  rm -rf "$work"
  # The daemon leaves its network for containers that outlive it; the soak's own goes here.
  ip link del kinglet-soak0 2>/dev/null || true
  nft delete table ip kinglet_soak 2>/dev/null || true
}
trap cleanup EXIT
bash tests/images/build-busybox-image.sh "$work/img" >/dev/null
printf 'crash-loop-backoff-initial-ms = %s\ncrash-loop-backoff-max-ms = %s\n' "$INITIAL_MS" "$MAX_MS" >"$work/kinglet.toml"
$k daemon --config "$work/kinglet.toml" --socket "$work/k.sock" --root "$work/root" --run-root "$work/run" \
  --manifests "$work/manifests" --bridge kinglet-soak0 --pod-cidr 10.213.0.0/24 --nft-table kinglet_soak \
  >"$work/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do $k image ls --socket "$work/k.sock" >/dev/null 2>&1 && break; sleep 0.1; done
$k image import --socket "$work/k.sock" "$work/img/busybox.tar" >/dev/null
for i in $(seq "$PODS"); do
  printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: soak-%s}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, "exit 1"]\n' "$i"
done >"$work/pods.yaml"
$k apply -f "$work/pods.yaml" --socket "$work/k.sock" >/dev/null
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$dpid/stat"; }
mem() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {printf "%.1f %.1f\n", r/1024, p/1024}' "/proc/$dpid/smaps_rollup"; }
restarts() {
  $k get pods -o json --socket "$work/k.sock" |
    python3 -c 'import json,sys; print(sum(p["status"]["containerStatuses"][0].get("restartCount",0) for p in json.load(sys.stdin)["items"]))'
}
echo "soak: $PODS pods exiting at once, back-off ${INITIAL_MS} ms doubling to ${MAX_MS} ms, $MINUTES min, sample every ${INTERVAL} s"
printf '%8s %10s %10s %8s %6s %10s\n' minute rss_mib pss_mib cpu_% fds restarts
end=$(( $(date +%s) + MINUTES * 60 ))
c0=$(cpu); t0=$(date +%s)
first_rss=""; first_cpu=""
while [ "$(date +%s)" -lt "$end" ]; do
  sleep "$INTERVAL"
  c1=$(cpu); t1=$(date +%s)
  pct=$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", (b-a)/t/d*100}')
  read -r rss pss < <(mem)
  fds=$(ls "/proc/$dpid/fd" | wc -l)
  printf '%8.1f %10s %10s %8s %6s %10s\n' "$(awk -v s=$((t1 - end + MINUTES * 60)) 'BEGIN{print s/60}')" "$rss" "$pss" "$pct" "$fds" "$(restarts)"
  [ -z "$first_rss" ] && { first_rss=$rss; first_cpu=$pct; }
  last_rss=$rss; last_cpu=$pct
  c0=$c1; t0=$t1
done
awk -v a="$first_rss" -v b="$last_rss" 'BEGIN {printf "ratio RSS last/first sample: %.2f (%s -> %s MiB)\n", b/a, a, b}'
awk -v a="$first_cpu" -v b="$last_cpu" 'BEGIN {printf "CPU first/last interval: %s%% / %s%% of one core\n", a, b}'
