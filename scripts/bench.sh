#!/usr/bin/env bash
# Benchmarks, run on demand (not in CI). Pod start latency (p50 over N pods, image present)
# through Kinglet's CRI socket, side by side with the reference: runc starting the same image's
# rootfs directly (create+start of one container, no pod), and the daemon's idle memory.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
bash scripts/setup-debian.sh
command -v runc >/dev/null || { apt-get install -y -qq runc; }
cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init --example bench_start --example bench_restart -p kinglet -p kinglet-shim -p kinglet-pod-init -p kinglet-tests
work=$(mktemp -d /tmp/kinglet-bench.XXXXXX)
cleanup() {
  [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null || true
  sleep 0.5
  awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
  for c in $(runc --root "$work/runc" list -q 2>/dev/null); do runc --root "$work/runc" delete -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
bash tests/images/build-busybox-image.sh "$work/img" >/dev/null
target/release/kinglet daemon --socket "$work/k.sock" --root "$work/root" --run-root "$work/run" \
  >"$work/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do target/release/kinglet image ls --socket "$work/k.sock" >/dev/null 2>&1 && break; sleep 0.1; done
target/release/kinglet image import --socket "$work/k.sock" "$work/img/busybox.tar" >/dev/null
sleep 2
rss() { awk '/^(Rss|Pss):/ {printf "%s %.1f MiB  ", $1, $2/1024}' "/proc/$1/smaps_rollup"; }
echo "kinglet daemon idle: $(rss $dpid)"
out=$(target/release/examples/bench_start --socket "$work/k.sock" --pods "$N")
echo "$out" | grep -v RESULT
k50=$(echo "$out" | awk '/^RESULT kinglet_p50_ms/ {print $3}')
echo "kinglet daemon after $N pods: $(rss $dpid)"
rout=$(target/release/examples/bench_restart --socket "$work/k.sock" --pods "$N")
echo "$rout" | grep -v RESULT
k_restart=$(echo "$rout" | awk '/^RESULT kinglet_restart_p50_ms/ {print $3}')

# Reference: runc on the same rootfs (unpacked once), one container per iteration.
umoci unpack --image "$work/img/layout:kinglet.test/busybox:latest" "$work/bundle" >/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sleep", "3600"]
c["root"]["readonly"] = True
json.dump(c, open(p, "w"))
PY
times=()
for i in $(seq "$N"); do
  t0=$(date +%s%N)
  runc --root "$work/runc" run -d --bundle "$work/bundle" "ref-$i" >/dev/null 2>&1 </dev/null
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000 )))
done
r50=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}')
echo "reference runc run -d (one container, no pod), $N runs: p50 $r50 ms"
awk -v k="$k50" -v r="$r50" 'BEGIN {printf "ratio kinglet pod start / runc run p50: %.2f\n", k/r}'
awk -v k="$k_restart" -v r="$r50" 'BEGIN {printf "ratio kinglet restart / runc run p50: %.2f (target: restart p50 <= 50 ms)\n", k/r}'
