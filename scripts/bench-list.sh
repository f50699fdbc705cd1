#!/usr/bin/env bash
# The ListImages benchmark like for like (scripts/bench-cri.sh runs it against each runtime):
# critest's "benchmark about listing Image" times ListImages of whatever the runtime holds, and
# after the other benchmarks the two runtimes hold different images (containerd its sandbox
# image, each what the earlier specs left). So: remove every image, pull the same fixed set
# (LIST_IMAGES), check the runtime lists exactly that many, then run only the listing spec
# (skipping the others: -benchmark forces critest's focus to "benchmark").
#
#   CRITEST=… PARAMS=params.yaml LIST_OUT=DIR bash scripts/bench-list.sh unix:///path/to.sock
#
# Writes critest's image_listing_benchmark_data.json into LIST_OUT and the count listed into
# LIST_OUT/images-listed. Needs the look-alike images on the runtime's registry mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint=$1
shared=${SHARED_DIR:-$(pwd)/../shared}
crictl=("$shared/cri-tools/crictl" --config /dev/null -r "$endpoint" -i "$endpoint" --timeout 60s)
images=${LIST_IMAGES:-registry.k8s.io/pause:3.9 registry.k8s.io/e2e-test-images/busybox:1.29-2}
mkdir -p "$LIST_OUT"
for id in $("${crictl[@]}" images -q 2>/dev/null | sort -u); do
  "${crictl[@]}" rmi "$id" >/dev/null 2>&1 || true
done
for i in $images; do "${crictl[@]}" pull "$i" >/dev/null; done
listed=$("${crictl[@]}" images -q | sort -u | wc -l)
want=$(wc -w <<<"$images")
[ "$listed" = "$want" ] || echo "bench-list.sh: $endpoint lists $listed images, not the $want pulled" >&2
echo "$listed" >"$LIST_OUT/images-listed"
"$CRITEST" --runtime-endpoint "$endpoint" --image-endpoint "$endpoint" --config /dev/null \
  --ginkgo.no-color --ginkgo.skip 'start a container from scratch|basic operations on Image' \
  --ginkgo.skip 'lifecycle of PodSandbox|basic operations on Container' \
  -benchmark -benchmarking-params-file "$PARAMS" -benchmarking-output-dir "$LIST_OUT" \
  >"$LIST_OUT/critest.log" 2>&1 ||
  { tail -5 "$LIST_OUT/critest.log"; echo "bench-list.sh: the listing benchmark failed" >&2; }
