#!/usr/bin/env bash
# Build the guest image of Kinglet's VM tests, or reuse the one already built from the same inputs.
#
# Usage: build-image.sh CACHE_DIR        prints the image directory as its last line of stdout
#
# The image is generic (no Kinglet in it): Debian's generic kernel as an uncompressed vmlinux
# (QEMU boots it directly, no firmware and no in-guest decompression), a busybox initramfs
# (initramfs.sh) and an ext4 root file system made by mmdebstrap (minbase + systemd, rootfs-hook.sh).
# Each test run brings its own Kinglet build, unit and checks over a 9p share (boot.sh).
#
# The image lands in CACHE_DIR/<key>, where <key> hashes these scripts and the kernel package's
# version: a second run with the same inputs reuses it; a new key replaces older images.
# Concurrent callers serialise on CACHE_DIR/.lock. Needs root and the Debian packages mmdebstrap,
# e2fsprogs and busybox-static (scripts/setup-debian.sh); the kernel package is fetched with
# `apt-get download`, everything else from the Debian archive by mmdebstrap.
set -euo pipefail

die() {
	echo "vm/build-image: $*" >&2
	exit 1
}

[[ $# -eq 1 ]] || { echo "usage: $0 CACHE_DIR" >&2; exit 2; }
here=$(dirname "$(realpath "$0")")
cache=$(realpath -m "$1")
[[ $EUID -eq 0 ]] || die "must run as root (mmdebstrap, file owners in the root file system)"
for tool in mmdebstrap mkfs.ext4 apt-get dpkg xz; do
	command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup-debian.sh (Debian packages mmdebstrap, e2fsprogs)"
done
busybox=/bin/busybox
[[ -x $busybox ]] && ! LC_ALL=C ldd "$busybox" >/dev/null 2>&1 ||
	die "$busybox is missing or dynamically linked: install the Debian package busybox-static"

# Packages of the guest's root file system: systemd as PID 1, what the daemon calls (nft), what the
# checks use (busybox for wget, procps for pgrep, jq for `kinglet get -o json`), and the daemon's
# one shared library.
packages=systemd,systemd-sysv,dbus,kmod,iproute2,nftables,busybox-static,procps,jq,libseccomp2

# The kernel: linux-image-amd64 is a metapackage; its dependency names the versioned image.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[[ -n $kpkg ]] || die "cannot resolve linux-image-amd64 (apt-get update first?)"
kver=${kpkg#linux-image-}
kdeb_version=$(apt-cache policy "$kpkg" | awk '/Candidate:/ { print $2 }')

key=$( {
	cat "$here/build-image.sh" "$here/rootfs-hook.sh" "$here/initramfs.sh"
	echo "$kpkg $kdeb_version $packages"
	sha256sum "$busybox"
} | sha256sum | cut -c1-16)
img=$cache/$key

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ -f $img/done ]]; then
	echo "vm/build-image: reusing $img" >&2
	echo "$img"
	exit 0
fi

start=$EPOCHREALTIME
work=$cache/.build-$key
rm -rf "$work"
mkdir -p "$work/kernel"
trap 'rm -rf "$work"' EXIT

# --- Kernel --------------------------------------------------------------------------------------
download() { (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >/dev/null); }
# Stale package lists name a kernel the archive no longer has: refresh them once.
download || { apt-get update -qq && download; } || die "apt-get download $kpkg failed"
dpkg -x "$work"/"${kpkg}"_*.deb "$work/kernel"
vmlinuz=$work/kernel/boot/vmlinuz-$kver
[[ -f $vmlinuz ]] || die "no $vmlinuz in $kpkg"
# bzImage = setup code + compressed ELF: decompress from the first xz stream that yields an ELF
# (the stream is followed by other data, so xz's trailing-garbage error is expected).
for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
	tail -c +$((off + 1)) "$vmlinuz" | xz -dc 2>/dev/null >"$work/vmlinux" || true
	[[ $(head -c 4 "$work/vmlinux" | od -An -c | tr -d ' ') == 177ELF ]] && break
	rm -f "$work/vmlinux"
done
[[ -s $work/vmlinux ]] || die "no xz-compressed ELF kernel found in $vmlinuz"

# --- Root file system ----------------------------------------------------------------------------
sources=()
[[ -f /etc/apt/sources.list.d/debian.sources ]] && sources=(/etc/apt/sources.list.d/debian.sources)
mmdebstrap --quiet --variant=minbase --include="$packages" \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--customize-hook="$here/rootfs-hook.sh \"\$1\" $work/kernel/lib/modules/$kver" \
	bookworm "$work/rootfs" "${sources[@]}"
bash "$here/initramfs.sh" "$work/rootfs/lib/modules/$kver" "$work/initrd.gz"
mkfs.ext4 -q -F -L root -d "$work/rootfs" "$work/rootfs.ext4" 2G >&2
rm -rf "$work/rootfs" "$work/kernel" "$work"/*.deb

echo "$kver" >"$work/kernel-version"
touch "$work/done"
# Only the current image is kept.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name ".build-$key" -exec rm -rf {} +
mv "$work" "$img"
trap - EXIT
awk -v a="$start" -v b="$EPOCHREALTIME" -v k="$kver" -v d="$img" \
	'BEGIN { printf "vm/build-image: built %s (kernel %s) in %.0f s\n", d, k, b - a }' >&2
echo "$img"
