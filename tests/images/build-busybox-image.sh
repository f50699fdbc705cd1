#!/usr/bin/env bash
# Build Kinglet's test image from the host's Debian busybox-static, without network access.
#
# Usage: build-busybox-image.sh OUT_DIR [NAME:TAG]      (default kinglet.test/busybox:latest)
#
# Writes:
#   OUT_DIR/layout       OCI image layout; index.json names the image with the annotation
#                        org.opencontainers.image.ref.name = NAME:TAG (the full reference)
#   OUT_DIR/busybox.tar  the same image as an oci-archive (same manifest digest and ref name)
#
# The image has one layer: /bin/busybox with every applet as a hard link in /bin, the usual
# top-level directories, and /etc/passwd and /etc/group with root (0), kinglet (1000, also a
# member of group users, 100) and nobody (65534). Config: Cmd ["sh"], PATH=/usr/sbin:/usr/bin:/sbin:/bin, WorkingDir /,
# linux/amd64. File times and the creation time are fixed (SOURCE_DATE_EPOCH, default
# 2024-01-01T00:00:00Z), so the same busybox binary gives the same manifest digest (the
# oci-archive's own tar headers still carry the build time).
#
# Needs root (the layer records file owners), and the Debian packages busybox-static, umoci and
# skopeo.
set -euo pipefail

die() {
	echo "build-busybox-image: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 OUT_DIR [NAME:TAG]   (default NAME:TAG: kinglet.test/busybox:latest)" >&2
	exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
out_dir=$1
ref=${2:-kinglet.test/busybox:latest}
# NAME without a tag means NAME:latest (a ':' after the last '/' starts the tag).
[[ ${ref##*/} == *:* ]] || ref="$ref:latest"
# umoci and skopeo take "PATH:REF" and cut at the first ':'.
[[ $out_dir != *:* ]] || die "OUT_DIR must not contain ':' ($out_dir)"
[[ -n $out_dir ]] || usage

busybox=${BUSYBOX:-/bin/busybox}
epoch=${SOURCE_DATE_EPOCH:-1704067200}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

# --- Preconditions -------------------------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "must run as root: the image's files are owned by root and by uid 1000"
[[ -x $busybox ]] || die "$busybox not found: install the Debian package busybox-static (apt-get install busybox-static)"
if LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked: install the Debian package busybox-static instead of busybox"
fi
command -v umoci >/dev/null || die "umoci not found: install the Debian package umoci (apt-get install umoci)"
command -v skopeo >/dev/null || die "skopeo not found: install the Debian package skopeo (apt-get install skopeo)"

mkdir -p "$out_dir"
layout=$out_dir/layout
archive=$out_dir/busybox.tar
rm -rf "$layout" "$archive"

work=$(mktemp -d "${TMPDIR:-/tmp}/kinglet-busybox.XXXXXX")
trap 'rm -rf "$work"' EXIT
image="$layout:$ref"
bundle=$work/bundle
rootfs=$bundle/rootfs

# The root filesystem is built in the bundle of an unpacked empty image, so that `umoci repack`
# writes a layer with relative paths (".", "bin/...") where `umoci insert` would write "/".
umoci init --layout "$layout"
umoci new --image "$image"
umoci unpack --image "$image" "$bundle" >/dev/null

# --- Root filesystem -----------------------------------------------------------------------------
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,var,home/kinglet}
install -d -m 0700 "$rootfs/root"
install -d -m 1777 "$rootfs/tmp"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
# Hard links, not symlinks: busybox picks the applet from argv[0], and a hard link keeps working
# when the image is inspected or copied without following symlinks.
applets=0
while read -r applet; do
	[[ -n $applet && $applet != busybox && $applet != */* ]] || continue
	ln "$rootfs/bin/busybox" "$rootfs/bin/$applet"
	applets=$((applets + 1))
done < <("$busybox" --list)
[[ -e $rootfs/bin/sh ]] || die "$busybox has no sh applet"

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
kinglet:x:1000:1000:kinglet:/home/kinglet:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
users:x:100:kinglet
kinglet:x:1000:
nogroup:x:65534:
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
chmod 0755 "$rootfs"
chown -R 0:0 "$rootfs"
chown 1000:1000 "$rootfs/home/kinglet"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

# --- OCI layout ----------------------------------------------------------------------------------
umoci repack --image "$image" --history.created "$created" \
	--history.created_by "build-busybox-image.sh (busybox-static, $applets applets)" \
	"$bundle"
umoci config --image "$image" --no-history --created "$created" \
	--architecture amd64 --os linux \
	--config.cmd sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.workingdir /
umoci gc --layout "$layout"

# --- oci-archive ---------------------------------------------------------------------------------
skopeo --insecure-policy copy --quiet --preserve-digests "oci:$image" "oci-archive:$archive:$ref"

echo "built $ref ($applets applets): $layout, $archive"
