#!/usr/bin/env bash
# The exec round trip, as a CRI user sees it: wall time of `crictl exec CONTAINER true`
# (streaming Exec: the CRI call, the streaming server's URL, the SPDY/WebSocket session, the
# process in the container, its exit status), EXEC_N times (default 40) against one running
# busybox container in a fresh pod. Prints one TSV line for scripts/bench-cri.sh's table:
#   Exec(crictl exec true)  n  p50_ns  p90_ns
#
#   bash scripts/bench-exec.sh unix:///path/to.sock     (EXEC_OUT=FILE appends the line there;
#                                                         EXEC_SAMPLES=FILE appends each sample's ns)
#
# Needs the look-alike busybox image reachable by the runtime (its registry mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint=$1
out=${EXEC_OUT:-/dev/stdout}
shared=${SHARED_DIR:-$(pwd)/../shared}
crictl=("$shared/cri-tools/crictl" --config /dev/null -r "$endpoint" -i "$endpoint" --timeout 60s)
n=${EXEC_N:-40}
image=registry.k8s.io/e2e-test-images/busybox:1.29-2
tmp=$(mktemp -d /tmp/kinglet-bench-exec-XXXXXX)
pod=
cleanup() {
  set +e
  [ -n "$pod" ] && "${crictl[@]}" rmp -f "$pod" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
cat >"$tmp/pod.json" <<JSON
{"metadata": {"name": "bench-exec", "namespace": "default", "uid": "bench-exec-$$"},
 "log_directory": "$tmp/logs", "linux": {}}
JSON
cat >"$tmp/ctr.json" <<JSON
{"metadata": {"name": "sleeper"}, "image": {"image": "$image"},
 "command": ["sleep", "3600"], "log_path": "sleeper.log", "linux": {}}
JSON
"${crictl[@]}" pull "$image" >/dev/null
pod=$("${crictl[@]}" runp "$tmp/pod.json")
ctr=$("${crictl[@]}" create "$pod" "$tmp/ctr.json" "$tmp/pod.json")
"${crictl[@]}" start "$ctr" >/dev/null
# One exec unmeasured (first-use costs: the streaming server's first connection, page cache).
"${crictl[@]}" exec "$ctr" true
for _ in $(seq "$n"); do
  t0=$(date +%s%N)
  "${crictl[@]}" exec "$ctr" true
  t1=$(date +%s%N)
  echo $((t1 - t0))
done | sort -n >"$tmp/samples"
count=$(wc -l <"$tmp/samples")
p50=$(sed -n "$((count / 2 + 1))p" "$tmp/samples")
p90=$(sed -n "$((count * 9 / 10 + 1))p" "$tmp/samples")
printf 'Exec(crictl exec true)\t%s\t%s\t%s\n' "$count" "$p50" "$p90" >>"$out"
[ -z "${EXEC_SAMPLES:-}" ] || cat "$tmp/samples" >>"$EXEC_SAMPLES"
