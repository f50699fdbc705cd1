#!/usr/bin/env bash
# The guest's initramfs: static busybox and the modules needed to reach the root file system
# (virtio block, ext4) and the 9p shares.
#
# Usage: initramfs.sh MODULES_DIR OUT.cpio.gz       (MODULES_DIR: the rootfs's lib/modules/KVER)
#
# Its /init mounts /dev/vda as the root, then copies the tree `root/` of the 9p share `payload`
# (when there is one) over it before starting systemd: that is how a test run installs its own
# files (the kinglet binary, enabled units) so that systemd finds them at boot, as on a host
# where they were installed before a reboot. The root disk is a QEMU snapshot, so nothing of a
# run outlives it.
set -euo pipefail
modules=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,mod,dev,proc,sys,newroot,payload}
cp /bin/busybox "$work/bin/busybox"
for a in sh mount umount insmod switch_root mkdir sleep cat cp poweroff; do
	ln -s busybox "$work/bin/$a"
done
# Roughly dependencies first (the file names keep the order); /init retries what did not load.
i=0
for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk \
	crc16 mbcache jbd2 crc32c_generic ext4 netfs fscache 9pnet 9pnet_virtio 9p; do
	f=$(find "$modules/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" \) | head -1)
	[[ -n $f ]] || { echo "vm/initramfs: module $m not found under $modules" >&2; exit 1; }
	i=$((i + 1))
	cp "$f" "$work/mod/$(printf %02d "$i")-$m.ko"
done
cat >"$work/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Load the modules, retrying those whose dependencies came later in the list.
for pass in 1 2 3; do
	for m in /mod/*.ko; do insmod "$m" 2>/dev/null && rm "$m"; done
done
for m in /mod/*.ko; do [ -e "$m" ] && echo "initramfs: module not loaded: $m"; done
fail() {
	echo "initramfs: $*"
	poweroff -f
}
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro payload /payload; then
	if [ -d /payload/root ]; then cp -a /payload/root/. /newroot/ || fail "cannot install the payload"; fi
	umount /payload
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
chmod +x "$work/init"
(cd "$work" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$out"
