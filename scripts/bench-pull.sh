#!/usr/bin/env bash
# Pull benchmark, run on demand (not in CI): a ~100 MB image of 5 layers (incompressible data,
# gzip layers) in Debian's docker-registry on 127.0.0.1, pulled by Kinglet (`kinglet image pull`:
# download, verify, store) and by the reference `skopeo copy docker://… oci:DIR` (download,
# verify, write an OCI layout), each RUNS times from an empty store; prints the medians and
# their ratio. Layers are unpacked by Kinglet when a container is first created, so the
# comparison is of fetching into a content store on both sides.
#
# Usage: scripts/bench-pull.sh            (RUNS=3 LAYERS=5 LAYER_MB=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
LAYERS=${LAYERS:-5}
LAYER_MB=${LAYER_MB:-20}
bash scripts/setup-debian.sh
cargo build --release --bin kinglet
bin=${CARGO_TARGET_DIR:-target}/release/kinglet
work=$(mktemp -d /tmp/kinglet-bench-pull.XXXXXX)
cleanup() {
  [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null || true
  [ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- The image: the busybox test image plus LAYERS layers of random data ---------------------
bash tests/images/build-busybox-image.sh "$work/img" >/dev/null
img="$work/img/layout:kinglet.test/busybox:latest"
umoci unpack --image "$img" "$work/bundle" >/dev/null
for i in $(seq "$LAYERS"); do
  head -c "$((LAYER_MB << 20))" /dev/urandom >"$work/bundle/rootfs/data-$i"
  umoci repack --refresh-bundle --image "$img" "$work/bundle" >/dev/null
done
size=$(du -sm "$work/img/layout/blobs" | cut -f1)

# --- The registry on a free loopback port ---------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
rpid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$img" "docker://127.0.0.1:$port/bench:1"
ref="127.0.0.1:$port/bench:1"
echo "image: $LAYERS+1 layers, ${size} MB of blobs, at $ref"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# --- Kinglet ---------------------------------------------------------------------------------
k_times=()
for r in $(seq "$RUNS"); do
  rm -rf "$work/k"
  "$bin" daemon --socket "$work/k.sock" --root "$work/k/root" --run-root "$work/k/run" \
    >"$work/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 100); do "$bin" image ls --socket "$work/k.sock" >/dev/null 2>&1 && break; sleep 0.1; done
  t0=$(now)
  "$bin" image pull --socket "$work/k.sock" "$ref" >/dev/null
  t1=$(now)
  k_times+=("$(echo "$t1 - $t0" | bc)")
  k_hwm=$(awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$dpid/status")
  k_store=$(du -sm "$work/k/root/images/blobs" | cut -f1)
  kill "$dpid"; wait "$dpid" 2>/dev/null || true; dpid=
done

# --- Reference: skopeo copy to an OCI layout --------------------------------------------------
s_times=()
for r in $(seq "$RUNS"); do
  rm -rf "$work/s"
  t0=$(now)
  skopeo --insecure-policy copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/s:bench"
  t1=$(now)
  s_times+=("$(echo "$t1 - $t0" | bc)")
done

k=$(printf '%s\n' "${k_times[@]}" | median)
s=$(printf '%s\n' "${s_times[@]}" | median)
echo "kinglet image pull:      ${k_times[*]} s (median $k s; store ${k_store} MB of blobs; daemon peak RSS $k_hwm)"
echo "skopeo copy to oci dir:  ${s_times[*]} s (median $s s)"
echo "RESULT pull_ratio_kinglet_over_skopeo $(echo "scale=3; $k / $s" | bc)"
