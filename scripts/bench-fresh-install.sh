#!/usr/bin/env bash
# The package-install part of the main job on a fresh Debian 12: builds a minimal bookworm root
# with mmdebstrap (--variant=important, what debootstrap lays down, plus ca-certificates), then,
# chrooted into it (its own mount namespace), runs `scripts/setup-debian.sh PROFILE` exactly as
# the main job does (apt-get update, then the missing packages) and prints the wall time, the
# number of packages it installed, their download size and the disk they take. The Rust
# toolchain is assumed installed (as on CI machines): stubs `cargo` and `rustc` in the root
# satisfy the script's check and nothing else. With LINK_CHECK=1 it also binds this host's rustup toolchain
# (~/.rustup, ~/.cargo/bin) into the root and builds a crate with a C build step (cc) there, to
# show the installed packages suffice to compile and link. Network: the Debian mirror only.
#
# Usage (root): scripts/bench-fresh-install.sh [run|test]
#   MIRROR=http://deb.debian.org/debian   ROOT_TAR=FILE (reuse a root made before: faster)
#   KEEP=1 (keep the temp dir)
set -euo pipefail
PROFILE=${1:-run}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "bench-fresh-install: run as root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "bench-fresh-install: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 2; }
D=$(mktemp -d /tmp/kinglet-fresh.XXXXXX)
R=$D/root
cleanup() { [ -n "${KEEP:-}" ] && { echo "kept $D"; return; }; rm -rf "$D"; }
trap cleanup EXIT
mkdir -p "$R"
if [ -n "${ROOT_TAR:-}" ] && [ -f "$ROOT_TAR" ]; then
	tar -C "$R" -xf "$ROOT_TAR"
else
	echo "building a fresh bookworm root (mmdebstrap --variant=important) ..."
	mmdebstrap --quiet --mode=root --variant=important --include=ca-certificates bookworm "$R" \
		"deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
		"deb ${MIRROR%/debian}/debian-security bookworm-security main"
	[ -z "${ROOT_TAR:-}" ] || tar -C "$R" -cf "$ROOT_TAR" .
fi
printf '#!/bin/sh\necho "stub cargo: the Rust toolchain is assumed installed" >&2\n' >"$R/usr/local/bin/cargo"
printf '#!/bin/sh\necho "rustc 1.85.0 (stub: the Rust toolchain is assumed installed)"\n' >"$R/usr/local/bin/rustc"
chmod 0755 "$R/usr/local/bin/cargo" "$R/usr/local/bin/rustc"
cp "$HERE/scripts/setup-debian.sh" "$R/setup-debian.sh"
cp /etc/resolv.conf "$R/etc/resolv.conf"
pkgs() { chroot "$R" dpkg-query -W -f='${Package}\n' | sort; }
pkgs >"$D/before"
# In a mount namespace of its own, so /proc, /sys and /dev go with it.
inroot() {
	unshare --mount --fork -- sh -c '
		r=$1; shift
		mount -t proc proc "$r/proc" && mount --rbind /sys "$r/sys" && mount --rbind /dev "$r/dev"
		exec chroot "$r" "$@"' sh "$R" "$@"
}
t0=$EPOCHREALTIME
inroot env PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin bash /setup-debian.sh "$PROFILE"
t1=$EPOCHREALTIME
pkgs >"$D/after"
# Installed-Size (KiB) of the packages it added, as apt's "will be used" figure.
kib=$(comm -13 "$D/before" "$D/after" | xargs chroot "$R" dpkg-query -W -f='${Installed-Size}\n' | awk '{s += $1} END {print s}')
new=$(comm -13 "$D/before" "$D/after" | wc -l)
dl=$(find "$R/var/cache/apt/archives" -name '*.deb' -printf '%s\n' | awk '{s += $1} END {printf "%.1f", s / 1e6}')
ndeb=$(find "$R/var/cache/apt/archives" -name '*.deb' | wc -l)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "setup-debian.sh $PROFILE on fresh Debian 12 (bookworm, variant important, $(wc -l <"$D/before") packages):"
echo "  $secs s (apt-get update + install), $new packages installed ($ndeb .debs, $dl MB downloaded), $((kib / 1024)) MiB installed"
echo "  installed: $(comm -13 "$D/before" "$D/after" | tr '\n' ' ')"
if [ -n "${LINK_CHECK:-}" ]; then
	# A crate with a cc build step (zstd-sys compiles C) and a linked binary, with the host's
	# toolchain: fails without a C compiler and libc headers in the root.
	H=${RUSTUP_HOME:-$HOME/.rustup}
	C=${CARGO_HOME:-$HOME/.cargo}
	mkdir -p "$R/opt/rustup" "$R/opt/cargo" "$R/opt/crate/src"
	printf '[package]\nname = "linkcheck"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\nzstd-sys = "2"\n' >"$R/opt/crate/Cargo.toml"
	printf 'fn main() { println!("zstd {}", unsafe { zstd_sys::ZSTD_versionNumber() }); }\n' >"$R/opt/crate/src/main.rs"
	rm "$R/usr/local/bin/cargo" "$R/usr/local/bin/rustc"
	unshare --mount --fork -- sh -c '
		r=$1
		mount --bind "$2" "$r/opt/rustup" && mount --bind "$3" "$r/opt/cargo"
		mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev"
		exec chroot "$r" env RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:/usr/bin:/bin \
			sh -c "cd /opt/crate && cargo run --offline -q"' sh "$R" "$H" "$C" &&
		echo "  link check: a crate with a C build step compiled and ran in the fresh root" ||
		{ echo "  link check FAILED: the packages do not suffice to build" >&2; exit 1; }
fi
