#!/usr/bin/env bash
# The main job: build Kinglet, start the daemon on its default paths (embedded defaults, no
# config file; pods get the built-in network: bridge kinglet0, 10.85.0.0/16, nftables table
# ip kinglet), load the project's busybox test image, and run an example pod.
# Run as root on Debian 12 with Rust installed. Stop it with: kill $(cat /run/kinglet/daemon.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo build --release --bin kinglet --example demo_pod -p kinglet -p kinglet-tests
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
"$bin" image ls --socket "$sock"
target/release/examples/demo_pod --socket "$sock"
