#!/usr/bin/env bash
# The main job: build Kinglet, start the daemon on its default paths (embedded defaults, no
# config file, no internet; pods get the built-in network: bridge kinglet0, 10.85.0.0/16,
# nftables table ip kinglet), load the project's busybox test image, and run the example pod of
# examples/web-pod.yaml (a ConfigMap volume, a Secret volume on tmpfs, env from both).
# Run as root on Debian 12 with Rust installed. Stop it with: kill $(cat /run/kinglet/daemon.pid)
# (containers keep running); remove everything with: target/release/kinglet reset
# At the end it prints its wall time split into package install, build and run.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$EPOCHREALTIME
bash scripts/setup-debian.sh run
t1=$EPOCHREALTIME
cargo build --release --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
t2=$EPOCHREALTIME
bin=target/release/kinglet
sock=/run/kinglet/kinglet.sock
mkdir -p /run/kinglet /var/log
if ! "$bin" image ls --socket "$sock" >/dev/null 2>&1; then
  echo "starting kinglet daemon (log: /var/log/kinglet.log)"
  setsid "$bin" daemon >>/var/log/kinglet.log 2>&1 < /dev/null &
  echo $! > /run/kinglet/daemon.pid
  for _ in $(seq 100); do "$bin" image ls --socket "$sock" >/dev/null 2>&1 && break; sleep 0.1; done
fi
img=$(mktemp -d)
bash tests/images/build-busybox-image.sh "$img" kinglet.test/busybox:latest >/dev/null
"$bin" image import --socket "$sock" "$img/busybox.tar"
rm -rf "$img"
"$bin" apply --socket "$sock" -f examples/web-pod.yaml
for _ in $(seq 100); do
  "$bin" get pods --socket "$sock" 2>/dev/null | grep -q "2/2 .*Running" && break
  sleep 0.2
done
"$bin" get pods --socket "$sock" -o wide
sleep 1
echo "--- kinglet logs web -c client"
"$bin" logs web -c client --socket "$sock"
echo "--- kinglet exec web -c client -- ls -l /etc/credentials/"
"$bin" exec web -c client --socket "$sock" -- ls -l /etc/credentials/
echo "the pod keeps running; remove it with: $bin delete --socket $sock -f examples/web-pod.yaml"
t3=$EPOCHREALTIME
# Seconds between two $EPOCHREALTIME readings, to 0.1 s.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
echo "main job: $(secs "$t0" "$t3") s = package install $(secs "$t0" "$t1") s + build $(secs "$t1" "$t2") s + run $(secs "$t2" "$t3") s"
