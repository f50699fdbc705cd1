#!/usr/bin/env bash
# Pull benchmark, run on demand (not in CI): a ~100 MB image of 5+1 layers (incompressible
# data, gzip layers) in Debian's docker-registry on 127.0.0.1, pulled through the same CRI
# client (examples/bench_pull: one PullImage, timed) from Kinglet (download, verify, store,
# unpack) and from Debian's containerd on a private socket and root (download, verify, store,
# unpack into its overlayfs snapshotter), each RUNS times from an empty store, daemons
# restarted each run; `skopeo copy docker://… oci:DIR` (download, verify, no unpack) is a
# second reference. Prints the medians and the ratios.
#
# Usage: scripts/bench-pull.sh            (RUNS=3 LAYERS=5 LAYER_MB=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
LAYERS=${LAYERS:-5}
LAYER_MB=${LAYER_MB:-20}
bash scripts/setup-debian.sh
command -v containerd >/dev/null || apt-get install -y -qq containerd
cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init --example bench_pull -p kinglet -p kinglet-shim -p kinglet-pod-init -p kinglet-tests
bin=${CARGO_TARGET_DIR:-target}/release/kinglet
client=${CARGO_TARGET_DIR:-target}/release/examples/bench_pull
work=$(mktemp -d /tmp/kinglet-bench-pull.XXXXXX)
cleanup() {
  [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null || true
  [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null || true
  [ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null || true
  wait 2>/dev/null || true
  unmount_under "$work"
  rm -rf "$work"
}
unmount_under() {
  local m
  for m in $(awk '{print $5}' /proc/self/mountinfo | grep "^$1" | sort -r); do umount -l "$m" 2>/dev/null || true; done
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
  ms=$("$client" --socket "$work/k.sock" --image "$ref" | awk '/^RESULT/ {print $3}')
  k_times+=("$(echo "scale=3; $ms / 1000" | bc)")
  k_hwm=$(awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$dpid/status")
  k_store=$(du -sm "$work/k/root/images/blobs" | cut -f1)
  kill "$dpid"; wait "$dpid" 2>/dev/null || true; dpid=
done

# --- Reference: containerd's CRI plugin ----------------------------------------------------------
mkdir -p "$work/certs.d/127.0.0.1:$port"
cat >"$work/certs.d/127.0.0.1:$port/hosts.toml" <<EOF
server = "http://127.0.0.1:$port"
[host."http://127.0.0.1:$port"]
  capabilities = ["pull", "resolve"]
EOF
c_times=()
for r in $(seq "$RUNS"); do
  rm -rf "$work/c"
  mkdir -p "$work/c"
  cat >"$work/c/config.toml" <<EOF
version = 2
root = "$work/c/root"
state = "$work/c/state"
[grpc]
  address = "$work/c/containerd.sock"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "$work/certs.d"
EOF
  containerd --config "$work/c/config.toml" >"$work/containerd.log" 2>&1 &
  cpid=$!
  for _ in $(seq 100); do [ -S "$work/c/containerd.sock" ] && break; sleep 0.1; done
  sleep 1
  ms=$("$client" --socket "$work/c/containerd.sock" --image "$ref" | awk '/^RESULT/ {print $3}')
  c_times+=("$(echo "scale=3; $ms / 1000" | bc)")
  kill "$cpid"; wait "$cpid" 2>/dev/null || true; cpid=
  unmount_under "$work/c"
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
c=$(printf '%s\n' "${c_times[@]}" | median)
s=$(printf '%s\n' "${s_times[@]}" | median)
echo "kinglet PullImage (+unpack):    ${k_times[*]} s (median $k s; store ${k_store} MB of blobs; daemon peak RSS $k_hwm)"
echo "containerd PullImage (+unpack): ${c_times[*]} s (median $c s)"
echo "skopeo copy to oci dir:         ${s_times[*]} s (median $s s)"
echo "RESULT pull_ratio_kinglet_over_containerd $(echo "scale=3; $k / $c" | bc)"
echo "RESULT pull_ratio_kinglet_over_skopeo $(echo "scale=3; $k / $s" | bc)"
