#!/usr/bin/env bash
# Benchmark, run on demand (not in CI): upstream `critest -benchmark` against Kinglet and, in the
# same run and with the same parameters, against containerd (Debian's, with runc and the standard
# CNI bridge plugin) as the reference. Prints each CRI operation's p50 and p90 for both and the
# ratio Kinglet / containerd, and the exec round trip (scripts/bench-exec.sh: `crictl exec` of
# `true`, EXEC_N=40 times) against each. Needs root; installs containerd from Debian when missing.
#
#   bash scripts/bench-cri.sh            N=40 PARALLEL=2 ROUNDS=2 by default
#
# Fairness: the runtimes take turns, ROUNDS runs each, in the order Kinglet, containerd, then
# containerd, Kinglet, and so on (host load that drifts during the bench falls on both sides);
# each side's samples (N per benchmark per run) are pooled before the percentiles are taken,
# and the host's load average is printed at the start and end of every run. ListImages is
# timed like for like (scripts/bench-list.sh: both runtimes holding the same images).
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
ROUNDS=${ROUNDS:-2}
if [ "$(id -u)" != 0 ]; then echo "bench-cri.sh: run as root" >&2; exit 1; fi
command -v containerd >/dev/null || apt-get install -y -qq containerd runc >/dev/null
critest=${CRITEST:-$(command -v critest || echo "$cri_tools/critest")}
work=$(mktemp -d /tmp/kinglet-bench-cri-XXXXXX)
# containerd (runc) needs its state traversable by the container user (the pause image runs as
# 65535), as its own 0711 /var/lib/containerd is.
chmod 0711 "$work"
ctd_pid=
# shellcheck source=scripts/registries.sh
. "$repo/scripts/registries.sh"
# Stop the containerd of one run (its pods, shims and mounts) and delete its state.
stop_containerd() {
  if [ -n "$ctd_pid" ]; then
    for id in $("$cri_tools/crictl" --config /dev/null -r "unix://$work/ctd/containerd.sock" pods -q 2>/dev/null); do
      "$cri_tools/crictl" --config /dev/null -r "unix://$work/ctd/containerd.sock" rmp -f "$id" >/dev/null 2>&1
    done
    kill "$ctd_pid" 2>/dev/null; sleep 1; kill -9 "$ctd_pid" 2>/dev/null || true
    pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $work/" 2>/dev/null || true
    ctd_pid=
  fi
  awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work/ctd"
}
cleanup() {
  set +e
  stop_containerd
  ip link del kbenchctd0 2>/dev/null
  registries_stop "$work/registry"
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
podContainerStartBenchmarkTimeoutSeconds: 120
EOF

# One Kinglet run: conformance.sh -benchmark with binary $2 (its shim and pod init beside it),
# figures into $work/out/$1, the exec round trip into $work/$1-exec.tsv.
run_kinglet() {
  local label=$1 bin=$2
  echo "== kinglet $label ($bin)"
  mkdir -p "$work/out/$label"
  EXEC_OUT=$work/$label-exec.tsv EXEC_SAMPLES=$work/$label-exec.samples LIST_OUT=$work/out/$label \
    BEFORE_CRITEST="bash $work/before.sh $work/$label-pull.samples" \
    AFTER_CRITEST="bash $work/after.sh" KINGLET_BIN=$bin \
    REPORT_DIR=$work/report-$label bash scripts/conformance.sh -benchmark \
    -benchmarking-params-file "$work/params.yaml" -benchmarking-output-dir "$work/out/$label" \
    --ginkgo.skip "${bench_spec[image_listing_benchmark_data]}" >"$work/$label.log" 2>&1 ||
    { tail -20 "$work/$label.log"; echo "bench-cri.sh: the Kinglet run ($label) failed" >&2; }
  missing_figures "$work/out/$label" "kinglet $label" || true
}

# The benchmark specs whose JSON file is missing from $1 (critest writes one per benchmark
# that ran to its end: a failed sample leaves its file out).
missing_figures() {
  local f n=0
  for f in pod_benchmark_data container_benchmark_data image_lifecycle_benchmark_data \
    image_listing_benchmark_data; do
    [ -s "$1/$f.json" ] || { echo "bench-cri.sh: $2: no $f.json"; n=$((n + 1)); }
  done
  return "$n"
}

# The benchmark spec (ginkgo focus) behind each figures file.
declare -A bench_spec=(
  [pod_benchmark_data]='benchmark about lifecycle of PodSandbox'
  [container_benchmark_data]='benchmark about basic operations on Container'
  [image_lifecycle_benchmark_data]='benchmark about basic operations on Image'
  [image_listing_benchmark_data]='benchmark about listing Image'
)

# critest -benchmark against endpoint $1, figures into $2, only spec $3 if set (the listing one
# never: scripts/bench-list.sh times it like for like). Through skips: -benchmark forces
# critest's focus to "benchmark", and ginkgo ORs a second focus with it.
bench_critest() {
  local focus=(--ginkgo.skip "${bench_spec[image_listing_benchmark_data]}") s
  if [ -n "$3" ]; then
    for s in "${bench_spec[@]}" 'start a container from scratch'; do
      [ "$s" = "$3" ] || focus+=(--ginkgo.skip "$s")
    done
  fi
  "$critest" --runtime-endpoint "$1" --image-endpoint "$1" --config /dev/null --ginkgo.no-color \
    -benchmark -benchmarking-params-file "$work/params.yaml" -benchmarking-output-dir "$2" \
    "${focus[@]}"
}

run_containerd() {
  echo "== containerd $(containerd --version | awk '{print $3}') + runc"
  # conformance.sh stopped the registries it started: private ones again (same look-alikes).
  export CRI_IMAGES_DIR=$work/cri-images
  registries_stop "$work/registry" # the previous round's, if any
  registries_start "$work/registry" >/dev/null
  REG=127.0.0.1:$REG_PORT AUTHREG=127.0.0.1:$AUTH_REG_PORT \
    bash "$cri_tools/images/build.sh" >"$work/images.log" 2>&1 ||
    { tail -5 "$work/images.log"; echo "bench-cri.sh: building the look-alike images failed" >&2; exit 1; }
  c=$work/ctd
  mkdir -p "$c/cni"
  for reg in registry.k8s.io gcr.io k8s.gcr.io public.ecr.aws docker.io; do
    mkdir -p "$c/certs.d/$reg"
    printf '[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$REG_PORT" >"$c/certs.d/$reg/hosts.toml"
  done
  cat >"$c/cni/10-bench.conflist" <<'JSON'
{"cniVersion": "1.0.0", "name": "bench", "plugins": [
  {"type": "bridge", "bridge": "kbenchctd0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.216.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
  cat >"$c/config.toml" <<TOML
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
TOML
  containerd --config "$c/config.toml" >"$c/containerd.log" 2>&1 &
  ctd_pid=$!
  for _ in $(seq 100); do [ -S "$c/containerd.sock" ] && break; sleep 0.1; done
  local ep=unix://$c/containerd.sock try
  bash "$work/before.sh" "$work/containerd-pull.samples" "$ep"
  mkdir -p "$work/out/containerd"
  # All benchmarks, then each one that wrote no figures (a failed sample loses its whole file)
  # again on its own, twice at most; the reason is printed from critest's log.
  bench_critest "$ep" "$work/out/containerd" '' >"$work/containerd.log" 2>&1 || true
  for try in 1 2; do
    missing=$(missing_figures "$work/out/containerd" containerd | sed -n 's/.*no \(.*\)\.json/\1/p' |
      grep -v image_listing || true)
    [ -n "$missing" ] || break
    for f in $missing; do
      echo "bench-cri.sh: containerd wrote no $f.json (try $try):" \
        "$(grep -m1 -oE '(\[FAILED\].*|rpc error: .*)' "$work/containerd.log" || echo '?')"
      bench_critest "$ep" "$work/out/containerd" "${bench_spec[$f]}" >>"$work/containerd.log" 2>&1 || true
    done
  done
  EXEC_OUT=$work/containerd-exec.tsv EXEC_SAMPLES=$work/containerd-exec.samples \
    LIST_OUT=$work/out/containerd bash "$work/after.sh" "$ep"
  missing_figures "$work/out/containerd" containerd || true
}

# What runs before critest, against each runtime: the sandbox image, as a node has it (else
# containerd's first RunPodSandbox pulls it). Kinglet needs no sandbox image, but it holds the
# same images as containerd during the run: the look-alike pause image shares its base layer
# with the busybox image the image benchmark pulls and removes, so the runtime holding pause
# keeps that layer unpacked and each PullImage fetches only a manifest and a config. Without
# it on both sides, PullImage compares a re-tag (containerd) with a full fetch and unpack.
# The cold pull is timed first, while no image shares a layer: `crictl pull` of that busybox
# (fetch, verify, unpack) then `crictl rmi`, PULL_N times (default 20), each pull's wall time
# in ns appended to $1 ($2: the endpoint).
cat >"$work/before.sh" <<EOF
c=("$cri_tools/crictl" --config /dev/null -r "\$2" -i "\$2")
img=public.ecr.aws/docker/library/busybox:1.35.0-glibc
for _ in \$(seq ${PULL_N:-20}); do
  t0=\$(date +%s%N)
  "\${c[@]}" pull "\$img" >/dev/null || { echo "bench-cri.sh: cold pull against \$2 failed"; break; }
  echo \$((\$(date +%s%N) - t0)) >>"\$1"
  "\${c[@]}" rmi "\$img" >/dev/null
done
"\${c[@]}" pull registry.k8s.io/pause:3.9 >/dev/null ||
  echo "bench-cri.sh: \$2 could not pull the sandbox image"
EOF

# What runs after critest, against each runtime while it is up: the exec round trip, then the
# listing benchmark on equal image sets.
cat >"$work/after.sh" <<EOF
bash "$repo/scripts/bench-exec.sh" "\$1" || echo "bench-cri.sh: the exec round trip against \$1 failed"
CRITEST="$critest" PARAMS="$work/params.yaml" bash "$repo/scripts/bench-list.sh" "\$1" ||
  echo "bench-cri.sh: the listing benchmark against \$1 failed"
EOF

# One run of side $1 in round $2: its figures into out/$1.r$2 and $1.r$2-exec.*, the load
# average at its start and end into loads.
run_side() {
  local side=$1 r=$2 l0
  l0=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "== round $r: $side (load average $l0)"
  case $side in
    kinglet) run_kinglet kinglet.r"$r" "${KINGLET_BIN:-$repo/target/release/kinglet}" ;;
    before) run_kinglet before.r"$r" "$BEFORE_BIN" ;;
    containerd)
      run_containerd
      rm -rf "$work/out/containerd.r$r"
      mv "$work/out/containerd" "$work/out/containerd.r$r"
      for f in exec.tsv exec.samples pull.samples; do
        [ ! -f "$work/containerd-$f" ] || mv "$work/containerd-$f" "$work/containerd.r$r-$f"
      done
      stop_containerd
      ;;
  esac
  printf '%-10s round %s: load average %s at start, %s at end\n' "$side" "$r" "$l0" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/loads"
}
sides=()
[ "${SKIP_KINGLET:-}" = 1 ] || sides+=(kinglet)
[ -z "${BEFORE_BIN:-}" ] || sides+=(before)
sides+=(containerd)
for r in $(seq "$ROUNDS"); do
  order=("${sides[@]}")
  # Even rounds in reverse: K C, C K, K C, ...
  if [ $((r % 2)) = 0 ]; then
    order=()
    for ((i = ${#sides[@]} - 1; i >= 0; i--)); do order+=("${sides[$i]}"); done
  fi
  for side in "${order[@]}"; do run_side "$side" "$r"; done
done

# p50/p90 of each operation, from the datapoints critest wrote (one JSON file per benchmark
# and run; the runs of side $1 pooled).
stats() {
  compgen -G "$work/out/$1.r*/*.json" >/dev/null || return 0
  jq -r -s '[.[] | select(.operationsNames) | . as $b | .datapoints[] |
      [range(0; ($b.operationsNames | length))] as $is | $is[] as $i |
      {op: $b.operationsNames[$i], ns: .operationsDurationsNs[$i]}] |
    group_by(.op)[] | (map(.ns) | sort) as $v |
    [.[0].op, ($v | length), $v[(($v | length) * 0.5 | floor)], $v[(($v | length) * 0.9 | floor)]] | @tsv' \
    "$work/out/$1".r*/*.json
}
# Pooled samples of side $1 from files $1.r*-$2.samples, as stats' line named $3 (same
# percentile indexes): the exec round trip and the cold pull.
sample_stats() {
  compgen -G "$work/$1.r*-$2.samples" >/dev/null || return 0
  sort -n "$work/$1".r*-"$2".samples | awk -v op="$3" '{ v[NR - 1] = $1 } END { if (NR)
    printf "%s\t%d\t%d\t%d\n", op, NR, v[int(NR * 0.5)], v[int(NR * 0.9)] }'
}
table() { # label: its figures, one TSV line per operation, sorted
  { stats "$1"; sample_stats "$1" exec "Exec(crictl exec true)"
    sample_stats "$1" pull "PullCold(crictl pull)"; } | sort
}
table kinglet >"$work/k.tsv"
table containerd >"$work/c.tsv"
table before >"$work/b.tsv"
echo
cat "$work/loads"
for side in kinglet containerd; do
  printf '%s lists %s images in ListImages (per run)\n' "$side" \
    "$(cat "$work/out/$side".r*/images-listed 2>/dev/null | tr '\n' ' ')"
done
echo
printf '%-26s %5s %12s %12s %12s %12s %8s\n' operation n kinglet_p50 kinglet_p90 ctrd_p50 ctrd_p90 p50_ratio
# Every operation either side measured; a missing figure shows as "-".
join -t $'\t' -a 1 -a 2 -e - -o 0,1.2,1.3,1.4,2.3,2.4 "$work/k.tsv" "$work/c.tsv" |
  awk -F'\t' 'function ms(v) { return v == "-" ? sprintf("%12s", "-") : sprintf("%10.2fms", v / 1e6) }
    { printf "%-26s %5s %s %s %s %s %8s\n", $1, $2, ms($3), ms($4), ms($5), ms($6),
        ($3 != "-" && $5 != "-" && $5 > 0) ? sprintf("%.2f", $3 / $5) : "-" }'
if [ -s "$work/b.tsv" ]; then
  echo
  printf '%-26s %12s %12s %8s   (before: %s)\n' operation before_p50 after_p50 ratio "$BEFORE_BIN"
  join -t $'\t' -a 1 -e - -o 0,1.3,2.3 "$work/b.tsv" "$work/k.tsv" |
    awk -F'\t' '{ printf "%-26s %10.2fms %10.2fms %8s\n", $1, $2 / 1e6, $3 / 1e6,
        ($2 > 0 && $3 != "-") ? sprintf("%.2f", $3 / $2) : "-" }'
fi
