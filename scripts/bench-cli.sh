#!/usr/bin/env bash
# CLI latency: `kinglet get pods` against a daemon running N pods (default 100), p50/p90 of
# RUNS calls (default 41), beside `kinglet version` (client start-up, connect, one trivial
# call) to split the client's own cost from the daemon's. Starts its own daemon on private
# paths (socket, root, bridge kbench0, table kbench) and removes everything at the end.
#
# Usage (root): scripts/bench-cli.sh [N] [RUNS]     KINGLET=path/to/kinglet to pick a binary
set -euo pipefail
N=${1:-100}
RUNS=${2:-41}
HERE=$(cd "$(dirname "$0")/.." && pwd)
K=${KINGLET:-$HERE/target/release/kinglet}
[ -x "$K" ] || { echo "bench-cli: no $K (cargo build --release --bin kinglet, or set KINGLET)" >&2; exit 2; }
IMG=$(ls -d "$HERE"/target/test-image/*/busybox.tar 2>/dev/null | head -1 || true)
if [ -z "$IMG" ]; then
	bash "$HERE/tests/images/build-busybox-image.sh" "$HERE/target/test-image/bench" >/dev/null
	IMG=$HERE/target/test-image/bench/busybox.tar
fi
D=$(mktemp -d /tmp/kinglet-bench-cli.XXXXXX)
S="--socket $D/k.sock"
mkdir -p "$D/manifests"
"$K" daemon --socket "$D/k.sock" --root "$D/root" --run-root "$D/run" --manifests "$D/manifests" \
	--bridge kbench0 --pod-cidr 10.214.0.0/16 --nft-table kbench >"$D/daemon.log" 2>&1 &
DPID=$!
cleanup() {
	kill "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	"$K" reset --yes --socket "$D/k.sock" --root "$D/root" --run-root "$D/run" \
		--bridge kbench0 --nft-table kbench >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$D/k.sock" ] && "$K" version $S >/dev/null 2>&1 && break; sleep 0.1; done
"$K" image import $S "$IMG" >/dev/null
{
	for i in $(seq 1 "$N"); do
		cat <<-YAML
		---
		apiVersion: v1
		kind: Pod
		metadata: {name: bench-$i, labels: {app: bench}}
		spec:
		  terminationGracePeriodSeconds: 0
		  containers:
		  - {name: c, image: "kinglet.test/busybox:latest", imagePullPolicy: Never, command: [sleep, "3600"]}
		YAML
	done
} >"$D/pods.yaml"
"$K" apply $S -f "$D/pods.yaml" >/dev/null
for _ in $(seq 600); do
	running=$("$K" get pods $S | grep -c ' Running ' || true)
	[ "$running" -ge "$N" ] && break
	sleep 0.5
done
echo "pods running: $running of $N"
# CPU time (user+system, ms) a process has used so far.
cpu_ms() {
	awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"
}
# Milliseconds of each of RUNS runs of "$@", sorted; prints p50 and p90 of the wall time, and
# the CPU time per call of the client and of the daemon (which do not depend on the machine's
# load as the wall time does).
measure() {
	local label=$1
	shift
	local t=()
	local d0 c0 c1
	d0=$(cpu_ms "$DPID")
	c0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
	for _ in $(seq "$RUNS"); do
		local a b
		a=${EPOCHREALTIME/./}
		"$@" >/dev/null
		b=${EPOCHREALTIME/./}
		t+=($(((b - a) / 1000)))
	done
	c1=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
	local dcpu=$((($(cpu_ms "$DPID") - d0) * 10 / RUNS))
	local ccpu=$(((c1 - c0) * 10000 / $(getconf CLK_TCK) / RUNS))
	mapfile -t s < <(printf '%s\n' "${t[@]}" | sort -n)
	printf '%-28s p50 %4d ms   p90 %4d ms   CPU/call: client %d.%d ms, daemon %d.%d ms   (%d runs)\n' \
		"$label" "${s[$((RUNS / 2))]}" "${s[$((RUNS * 9 / 10))]}" \
		$((ccpu / 10)) $((ccpu % 10)) $((dcpu / 10)) $((dcpu % 10)) "$RUNS"
}
measure "kinglet --help (start-up)" "$K" --help
measure "kinglet version" "$K" version $S
measure "kinglet get pods ($N pods)" "$K" get pods $S
measure "kinglet get pods -o json" "$K" get pods $S -o json
"$K" delete pods --all $S >/dev/null
