#!/usr/bin/env bash
# Install what building, running and testing Kinglet needs on Debian 12, as root.
# The Rust toolchain (cargo) is expected to be installed already (rustup).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "setup-debian.sh: run as root" >&2; exit 1; fi
command -v cargo >/dev/null || { echo "setup-debian.sh: cargo not found: install Rust (rustup) first" >&2; exit 1; }
pkgs=(
  protobuf-compiler   # tonic/prost code generation (CRI schema)
  libseccomp-dev pkg-config  # libcontainer's seccomp support
  busybox-static umoci skopeo  # the project's own test image, built offline
  iproute2 util-linux  # ip, nsenter in tests
  nftables  # nft: NAT and hostPort rules in Kinglet's own table
  containernetworking-plugins iptables  # CNI mode (bridge, host-local, portmap; they use iptables)
  docker-registry apache2-utils openssl  # registry pull tests: registry, htpasswd, test CA
  qemu-system-x86 mmdebstrap e2fsprogs binutils  # VM tests (tests/vm): QEMU, guest root, mkfs.ext4 -d, objcopy
  gcc libc6-dev curl jq  # CRI conformance (scripts/conformance.sh): critest's look-alike images, report
  wrk  # scripts/bench-ingress.sh
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
