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
# Rust 1.85 or later (Cargo.toml's rust-version); Debian 12's own rustc (1.63) is too old.
rustup_hint="install Rust 1.85 or later with rustup: apt-get install curl; curl --proto '=https' -sSf https://sh.rustup.rs | sh; then open a new shell (Debian 12's rustc 1.63 is too old)"
command -v cargo >/dev/null || { echo "setup-debian.sh: cargo not found: $rustup_hint" >&2; exit 1; }
rust_minor=$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\)\..*/\1/p')
if [ -z "$rust_minor" ] || [ "$rust_minor" -lt 85 ]; then
  echo "setup-debian.sh: $(rustc --version 2>&1 | head -1) is too old or missing: $rustup_hint" >&2
  exit 1
fi
pkgs=(
  gcc libc6-dev  # the linker rustc calls, and C build steps (ring, zstd-sys)
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
  curl jq  # CRI conformance (scripts/conformance.sh): critest's look-alike images, report
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
