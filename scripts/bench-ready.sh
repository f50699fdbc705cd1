#!/usr/bin/env bash
# Start-up time: from `kinglet daemon` being started to its READY=1 on NOTIFY_SOCKET (the
# moment systemd marks a Type=notify unit active: recovery done, the CRI socket answering),
# on a fresh root, with 0 pods to recover, and with N pods (default 100) running to recover.
# Each case RUNS times (default 5): prints every run and the median, in ms. Starts its own
# daemon on private paths (socket, root, bridge kready0, table kready) and removes everything
# (pods included: `kinglet reset`) at the end.
#
# Usage (root): scripts/bench-ready.sh [N] [RUNS]     KINGLET=path/to/kinglet to pick a binary
set -euo pipefail
N=${1:-100}
RUNS=${2:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
K=${KINGLET:-$HERE/target/release/kinglet}
[ -x "$K" ] || { echo "bench-ready: no $K (cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init, or set KINGLET)" >&2; exit 2; }
IMG=$(ls -d "$HERE"/target/test-image/*/busybox.tar 2>/dev/null | head -1 || true)
if [ -z "$IMG" ]; then
	bash "$HERE/tests/images/build-busybox-image.sh" "$HERE/target/test-image/bench" >/dev/null
	IMG=$HERE/target/test-image/bench/busybox.tar
fi
D=$(mktemp -d /tmp/kinglet-bench-ready.XXXXXX)
S="--socket $D/k.sock"
FLAGS=(--socket "$D/k.sock" --root "$D/root" --run-root "$D/run" --bridge kready0 --nft-table kready)
mkdir -p "$D/manifests"
DPID=
stop() {
	[ -n "$DPID" ] || return 0
	kill "$DPID" 2>/dev/null || true
	while kill -0 "$DPID" 2>/dev/null; do sleep 0.05; done
	DPID=
}
cleanup() {
	stop
	"$K" reset --yes "${FLAGS[@]}" >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT

# Start the daemon and wait for READY=1; sets MS to the milliseconds it took, DPID.
start() {
	rm -f "$D/notify.sock" "$D/pid"
	python3 - "$D" "$K" "${FLAGS[@]}" --manifests "$D/manifests" --pod-cidr 10.213.0.0/16 <<-'PY' >"$D/ms"
	import os, socket, subprocess, sys, time
	d, k, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
	rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	rx.bind(d + "/notify.sock")
	rx.settimeout(300)
	env = dict(os.environ, NOTIFY_SOCKET=d + "/notify.sock")
	log = open(d + "/daemon.log", "ab")
	t0 = time.monotonic()
	p = subprocess.Popen([k, "daemon", *flags], env=env, stdout=log, stderr=log,
	                     stdin=subprocess.DEVNULL, start_new_session=True)
	while rx.recv(4096) != b"READY=1":
	    pass
	print(round((time.monotonic() - t0) * 1000))
	open(d + "/pid", "w").write(str(p.pid))
	PY
	DPID=$(cat "$D/pid")
	MS=$(cat "$D/ms")
}

# CASE: RUNS restarts of the daemon, the median.
measure() {
	local label=$1 t=()
	for _ in $(seq "$RUNS"); do
		stop
		start
		t+=("$MS")
	done
	mapfile -t s < <(printf '%s\n' "${t[@]}" | sort -n)
	printf '%-34s median %5d ms   runs: %s\n' "$label" "${s[$((RUNS / 2))]}" "${t[*]}"
}

echo "binary: $K; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
start
printf '%-34s %5d ms\n' "fresh root (first start)" "$MS"
"$K" image import $S "$IMG" >/dev/null
measure "0 pods to recover"
{
	for i in $(seq 1 "$N"); do
		cat <<-YAML
		---
		apiVersion: v1
		kind: Pod
		metadata: {name: ready-$i}
		spec:
		  terminationGracePeriodSeconds: 0
		  containers:
		  - {name: c, image: "kinglet.test/busybox:latest", imagePullPolicy: Never, command: [sleep, "3600"]}
		YAML
	done
} >"$D/pods.yaml"
"$K" apply $S -f "$D/pods.yaml" >/dev/null
running=0
for _ in $(seq 1200); do
	running=$("$K" get pods $S | grep -c ' Running ' || true)
	[ "$running" -ge "$N" ] && break
	sleep 0.5
done
[ "$running" -ge "$N" ] || { echo "only $running of $N pods running" >&2; exit 1; }
measure "$N pods to recover"
