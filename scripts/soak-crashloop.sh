#!/usr/bin/env bash
# Soak, run on demand (not in CI): PODS pods whose container exits at once, for MINUTES
# minutes, under the configured CrashLoopBackOff (short constants by default so that the loop
# is busy: 1 s doubling to 10 s). Samples the daemon's memory (RSS, PSS), CPU, open file
# descriptors and tasks (threads) every INTERVAL seconds, and the total restarts; prints a
# table and the end/start ratios. With the back-off holding, memory and CPU stay flat however
# long it runs.
#
# CYCLES=N (default 0) also runs N pod create/remove cycles beside the crash loops, one after
# the other through crictl (CRICTL, default ../shared/cri-tools/crictl, else crictl on PATH):
# RunPodSandbox, CreateContainer + StartContainer (busybox sleep), then `rmp -f`; the table
# gets the cycles done so far. It runs MINUTES minutes, longer if the cycles are not done by
# then (at most twice MINUTES); the crash loops go on after the cycles are done.
#   CYCLES=1000 MINUTES=30 PODS=100 bash scripts/soak-crashloop.sh   (the issue's soak)
# At the end it compares the means of the first and last 10 samples (RSS, fds, tasks) and
# prints, after the daemon is stopped, any kinglet-shim/kinglet-pod-init left behind.
# PROFILE=debug uses a debug build (quicker to build; memory figures are then larger).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
PODS=${PODS:-10}
INTERVAL=${INTERVAL:-60}
INITIAL_MS=${INITIAL_MS:-1000}
MAX_MS=${MAX_MS:-10000}
CYCLES=${CYCLES:-0}
PROFILE=${PROFILE:-release}
bash scripts/setup-debian.sh >/dev/null
if [ "$PROFILE" = release ]; then
  cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
else
  cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
fi
k=target/$PROFILE/kinglet
work=$(mktemp -d /tmp/kinglet-soak.XXXXXX)
cleanup() {
  if [ -n "${cpid:-}" ]; then kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi
  if [ -n "${dpid:-}" ]; then
    if [ -n "${crictl:-}" ]; then
      for id in $("${crictl[@]}" pods -q 2>/dev/null); do "${crictl[@]}" rmp -f "$id" >/dev/null 2>&1 || true; done
    fi
    $k delete -f "$work/pods.yaml" --socket "$work/k.sock" >/dev/null 2>&1 || true
    # Deletion is graceful and asynchronous: stop the daemon only once every sandbox is gone
    # (at most 2 minutes), or it leaves shims of half-removed pods for its next start.
    for _ in $(seq 120); do
      [ -z "$("${crictl[@]}" pods -q 2>/dev/null)" ] && break
      sleep 1
    done
    kill "$dpid" 2>/dev/null || true
    # Every pod is removed and the daemon stopped: no shim or pod init of this run may be left.
    sleep 2
    left=""
    for f in /proc/[0-9]*/cmdline; do # expanded once: later readers are not in the list
      line=$(tr '\0' ' ' <"$f" 2>/dev/null) || continue
      case "$line" in *"$work"*) left+="  ${f%/cmdline}: $line"$'\n' ;; esac
    done
    if [ -n "$left" ]; then
      printf 'soak: LEFT BEHIND after cleanup:\n%s' "$left" >&2
    else
      echo "soak: no shim or pod init left after cleanup"
    fi
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
crictl=("${CRICTL:-$(pwd)/../shared/cri-tools/crictl}" --config /dev/null -r "unix://$work/k.sock" -i "unix://$work/k.sock" --timeout 60s)
[ -x "${crictl[0]}" ] || crictl[0]=crictl
# One create/remove cycle after the other, counted in $work/cycles; a failed cycle stops it.
cycles() {
  cat >"$work/cpod.json" <<JSON
{"metadata": {"name": "cycle", "namespace": "default", "uid": "soak-cycle"}, "log_directory": "$work/clogs", "linux": {}}
JSON
  cat >"$work/cctr.json" <<JSON
{"metadata": {"name": "c"}, "image": {"image": "kinglet.test/busybox:latest"}, "command": ["sleep", "3600"], "log_path": "c.log", "linux": {}}
JSON
  # crictl's stderr (a warning per create) is shown only when a cycle fails.
  for i in $(seq "$CYCLES"); do
    pod=$("${crictl[@]}" runp "$work/cpod.json" 2>"$work/cycle.err") &&
      ctr=$("${crictl[@]}" create "$pod" "$work/cctr.json" "$work/cpod.json" 2>"$work/cycle.err") &&
      "${crictl[@]}" start "$ctr" >/dev/null 2>"$work/cycle.err" &&
      "${crictl[@]}" rmp -f "$pod" >/dev/null 2>"$work/cycle.err" ||
      { echo "soak: cycle $i failed: $(cat "$work/cycle.err")" >&2; return 1; }
    echo "$i" >"$work/cycles.tmp" && mv "$work/cycles.tmp" "$work/cycles"
  done
}
echo 0 >"$work/cycles"
if [ "$CYCLES" -gt 0 ]; then
  cycles &
  cpid=$!
fi
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$dpid/stat"; }
mem() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {printf "%.1f %.1f\n", r/1024, p/1024}' "/proc/$dpid/smaps_rollup"; }
restarts() {
  $k get pods -o json --socket "$work/k.sock" |
    python3 -c 'import json,sys; print(sum(p["status"]["containerStatuses"][0].get("restartCount",0) for p in json.load(sys.stdin)["items"]))'
}
echo "soak: $PODS pods exiting at once, back-off ${INITIAL_MS} ms doubling to ${MAX_MS} ms, $CYCLES create/remove cycles, $MINUTES min, sample every ${INTERVAL} s ($PROFILE build)"
printf '%8s %10s %10s %8s %6s %6s %10s %7s\n' minute rss_mib pss_mib cpu_% fds tasks restarts cycles
end=$(( $(date +%s) + MINUTES * 60 ))
c0=$(cpu); t0=$(date +%s)
first_rss=""; first_cpu=""
hard_end=$(( end + MINUTES * 60 ))
: >"$work/samples"
while [ "$(date +%s)" -lt "$end" ] || { [ -n "${cpid:-}" ] && [ "$(date +%s)" -lt "$hard_end" ]; }; do
  sleep "$INTERVAL"
  c1=$(cpu); t1=$(date +%s)
  pct=$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", (b-a)/t/d*100}')
  read -r rss pss < <(mem)
  fds=$(ls "/proc/$dpid/fd" | wc -l)
  tasks=$(ls "/proc/$dpid/task" | wc -l)
  printf '%8.1f %10s %10s %8s %6s %6s %10s %7s\n' "$(awk -v s=$((t1 - end + MINUTES * 60)) 'BEGIN{print s/60}')" \
    "$rss" "$pss" "$pct" "$fds" "$tasks" "$(restarts)" "$(cat "$work/cycles")"
  echo "$rss $fds $tasks" >>"$work/samples"
  [ -z "$first_rss" ] && { first_rss=$rss; first_cpu=$pct; first_fds=$fds; first_tasks=$tasks; }
  last_rss=$rss; last_cpu=$pct; last_fds=$fds; last_tasks=$tasks
  c0=$c1; t0=$t1
  if [ -n "${cpid:-}" ] && ! kill -0 "$cpid" 2>/dev/null; then
    wait "$cpid" || { echo "soak: the create/remove cycles failed" >&2; exit 1; }
    cpid=
  fi
done
awk -v a="$first_rss" -v b="$last_rss" 'BEGIN {printf "ratio RSS last/first sample: %.2f (%s -> %s MiB)\n", b/a, a, b}'
awk -v a="$first_cpu" -v b="$last_cpu" 'BEGIN {printf "CPU first/last interval: %s%% / %s%% of one core\n", a, b}'
echo "fds first/last sample: $first_fds / $last_fds; tasks: $first_tasks / $last_tasks"
echo "cycles done: $(cat "$work/cycles") of $CYCLES"
# Flat: the mean of the last 10 samples against the mean of the first 10.
awk '{r[NR]=$1; f[NR]=$2; t[NR]=$3} END {
  n = NR < 10 ? NR : 10
  for (i = 1; i <= n; i++) { r0 += r[i]; f0 += f[i]; t0 += t[i]; r1 += r[NR-n+i]; f1 += f[NR-n+i]; t1 += t[NR-n+i] }
  printf "first/last %d samples, mean: RSS %.1f -> %.1f MiB (x%.2f), fds %.1f -> %.1f, tasks %.1f -> %.1f\n",
    n, r0/n, r1/n, r1/r0, f0/n, f1/n, t0/n, t1/n }' "$work/samples"
