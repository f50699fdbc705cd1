#!/usr/bin/env bash
# Benchmark, run on demand (not in CI): upstream `critest -benchmark` against Kinglet and, in the
# same run and with the same parameters, against containerd (Debian's, with runc and the standard
# CNI bridge plugin) as the reference. Prints each CRI operation's p50 and p90 for both and the
# ratio Kinglet / containerd, and the exec round trip (scripts/bench-exec.sh: `crictl exec` of
# `true`, EXEC_N=40 times) against each. Needs root; installs containerd from Debian when missing.
#
#   bash scripts/bench-cri.sh            N=40 PARALLEL=2 by default (samples per benchmark)
#
# Kinglet runs through scripts/conformance.sh (fresh private daemon, look-alike images on the
# local registries); containerd gets private root/state/socket, a CNI bridge conflist and
# registry mirrors to the same local registry. Everything started is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
shared=${SHARED_DIR:-$repo/../shared}
cri_tools=$shared/cri-tools
N=${N:-40}
PARALLEL=${PARALLEL:-2}
if [ "$(id -u)" != 0 ]; then echo "bench-cri.sh: run as root" >&2; exit 1; fi
command -v containerd >/dev/null || apt-get install -y -qq containerd runc >/dev/null
critest=${CRITEST:-$(command -v critest || echo "$cri_tools/critest")}
work=$(mktemp -d /tmp/kinglet-bench-cri-XXXXXX)
# containerd (runc) needs its state traversable by the container user (the pause image runs as
# 65535), as its own 0711 /var/lib/containerd is.
chmod 0711 "$work"
ctd_pid=
cleanup() {
  set +e
  if [ -n "$ctd_pid" ]; then
    for id in $("$cri_tools/crictl" --config /dev/null -r "unix://$work/ctd/containerd.sock" pods -q 2>/dev/null); do
      "$cri_tools/crictl" --config /dev/null -r "unix://$work/ctd/containerd.sock" rmp -f "$id" >/dev/null 2>&1
    done
    kill "$ctd_pid" 2>/dev/null; sleep 1; kill -9 "$ctd_pid" 2>/dev/null
    pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $work/" 2>/dev/null
  fi
  awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  ip link del kbenchctd0 2>/dev/null
  bash "$cri_tools/images/registry.sh" stop >/dev/null 2>&1
  [ "${KEEP:-}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/params.yaml" <<EOF
containersNumber: $N
containersNumberParallel: $PARALLEL
containerBenchmarkTimeoutSeconds: 120
podsNumber: $N
podsNumberParallel: $PARALLEL
podBenchmarkTimeoutSeconds: 120
imagesNumber: $N
imagesNumberParallel: $PARALLEL
imageBenchmarkTimeoutSeconds: 120
EOF

echo "== kinglet (scripts/conformance.sh -benchmark)"
mkdir -p "$work/out/kinglet" "$work/out/containerd"
EXEC_OUT=$work/k-exec.tsv AFTER_CRITEST="bash $repo/scripts/bench-exec.sh" \
  REPORT_DIR=$work/report-kinglet bash scripts/conformance.sh -benchmark \
  -benchmarking-params-file "$work/params.yaml" -benchmarking-output-dir "$work/out/kinglet" >"$work/kinglet.log" 2>&1 ||
  { tail -20 "$work/kinglet.log"; echo "bench-cri.sh: the Kinglet run failed" >&2; exit 1; }

echo "== containerd $(containerd --version | awk '{print $3}') + runc"
export CRI_IMAGES_DIR=$work/cri-images
bash "$cri_tools/images/registry.sh" start >/dev/null
bash "$cri_tools/images/build.sh" >"$work/images.log" 2>&1
c=$work/ctd
mkdir -p "$c/cni"
for reg in registry.k8s.io gcr.io k8s.gcr.io public.ecr.aws docker.io; do
  mkdir -p "$c/certs.d/$reg"
  printf '[host."http://127.0.0.1:5000"]\n  capabilities = ["pull", "resolve"]\n' >"$c/certs.d/$reg/hosts.toml"
done
cat >"$c/cni/10-bench.conflist" <<'EOF'
{"cniVersion": "1.0.0", "name": "bench", "plugins": [
  {"type": "bridge", "bridge": "kbenchctd0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.216.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  # These hosts' bounding set lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj to the
  # sandbox's -998 ("can't get final child's PID from pipe: EOF") unless containerd caps it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$c/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$c/certs.d"
EOF
containerd --config "$c/config.toml" >"$c/containerd.log" 2>&1 &
ctd_pid=$!
for _ in $(seq 100); do [ -S "$c/containerd.sock" ] && break; sleep 0.1; done
"$critest" --runtime-endpoint "unix://$c/containerd.sock" --image-endpoint "unix://$c/containerd.sock" \
  --config /dev/null --ginkgo.no-color -benchmark -benchmarking-params-file "$work/params.yaml" \
  -benchmarking-output-dir "$work/out/containerd" >"$work/containerd.log" 2>&1 || {
  # The reference column is then missing, and the reason printed.
  echo "bench-cri.sh: the containerd run failed; reference figures missing. Its first error:"
  grep -m1 -oE 'err="[^"]*"' "$work/containerd.log" || tail -3 "$work/containerd.log"
}
EXEC_OUT=$work/c-exec.tsv bash scripts/bench-exec.sh "unix://$c/containerd.sock" ||
  echo "bench-cri.sh: the containerd exec round trip failed"

# p50/p90 of each operation, from the datapoints critest wrote (one JSON file per benchmark).
stats() {
  compgen -G "$1/*.json" >/dev/null || return 0
  jq -r -s '[.[] | select(.operationsNames) | . as $b | .datapoints[] |
      [range(0; ($b.operationsNames | length))] as $is | $is[] as $i |
      {op: $b.operationsNames[$i], ns: .operationsDurationsNs[$i]}] |
    group_by(.op)[] | (map(.ns) | sort) as $v |
    [.[0].op, ($v | length), $v[(($v | length) * 0.5 | floor)], $v[(($v | length) * 0.9 | floor)]] | @tsv' \
    "$1"/*.json
}
{ stats "$work/out/kinglet"; cat "$work/k-exec.tsv" 2>/dev/null; } | sort >"$work/k.tsv"
{ stats "$work/out/containerd"; cat "$work/c-exec.tsv" 2>/dev/null; } | sort >"$work/c.tsv"
echo
printf '%-26s %5s %12s %12s %12s %12s %8s\n' operation n kinglet_p50 kinglet_p90 ctrd_p50 ctrd_p90 p50_ratio
join -t $'\t' -a 1 -e 0 -o 1.1,1.2,1.3,1.4,2.2,2.3,2.4 "$work/k.tsv" "$work/c.tsv" |
  awk -F'\t' '{ printf "%-26s %5d %10.2fms %10.2fms %10.2fms %10.2fms %8.2f\n", $1, $2, $3/1e6, $4/1e6, $6/1e6, $7/1e6, ($6 > 0 ? $3/$6 : 0) }'
