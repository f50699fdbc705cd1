#!/usr/bin/env bash
# Install what Kinglet needs on Debian 12, as root. The Rust toolchain (cargo) is expected to be
# installed already (rustup).
#
# Usage: setup-debian.sh [run|test]
#   run   what building and running it needs (the main job): the compilers' inputs, nft, ip,
#         and the tools that build the project's test image; without recommended packages.
#   test  (default) that, plus what the test suite needs: CNI plugins, a registry, QEMU and
#         mmdebstrap for the VM tests, critest's helpers.
set -euo pipefail
profile=${1:-test}
case "$profile" in run | test) ;; *) echo "usage: setup-debian.sh [run|test]" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then echo "setup-debian.sh: run as root" >&2; exit 1; fi
command -v cargo >/dev/null || { echo "setup-debian.sh: cargo not found: install Rust (rustup) first" >&2; exit 1; }
pkgs=(
  protobuf-compiler   # tonic/prost code generation (CRI schema)
  libseccomp-dev pkg-config  # libcontainer's seccomp support
  busybox-static umoci skopeo  # the project's own test image, built offline
  iproute2 util-linux  # ip, nsenter in tests
  nftables  # nft: NAT and hostPort rules in Kinglet's own table
)
test_pkgs=(
  containernetworking-plugins iptables  # CNI mode (bridge, host-local, portmap; they use iptables)
  docker-registry apache2-utils openssl  # registry pull tests: registry, htpasswd, test CA
  qemu-system-x86 mmdebstrap e2fsprogs binutils  # VM tests (tests/vm): QEMU, guest root, mkfs.ext4 -d, objcopy
  tmux  # tests/tests/tty_tmux.rs: exec -it on a real terminal
  gcc libc6-dev curl jq  # CRI conformance (scripts/conformance.sh): critest's look-alike images, report
  wrk  # scripts/bench-ingress.sh
  g++  # scripts/fuzz.sh: libfuzzer-sys builds libFuzzer (C++)
)
apt_opts=(--no-install-recommends)
if [ "$profile" = test ]; then
  pkgs+=("${test_pkgs[@]}")
  apt_opts=()
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${apt_opts[@]}" "${missing[@]}"
fi
