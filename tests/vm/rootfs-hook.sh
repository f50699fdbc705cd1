#!/usr/bin/env bash
# mmdebstrap --customize-hook of build-image.sh: make the bootstrapped tree a test guest.
#
# Usage: rootfs-hook.sh ROOTFS KERNEL_MODULES_DIR   (the unpacked kernel package's lib/modules/KVER)
#
# No root password, the 9p shares in fstab, no timers or ttys that slow the boot, and a pruned
# module tree (file systems, networking, netfilter, virtio; no hardware drivers).
set -euo pipefail
root=$1
src=$2
kver=$(basename "$src")

echo kinglet-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 kinglet-vm\n' >"$root/etc/hosts"
chroot "$root" passwd -d root >/dev/null
mkdir -p "$root/payload" "$root/results"
cat >"$root/etc/fstab" <<'EOF'
payload /payload 9p trans=virtio,version=9p2000.L,msize=262144,ro 0 0
results /results 9p trans=virtio,version=9p2000.L,msize=262144,rw 0 0
EOF
rm -f "$root"/etc/systemd/system/timers.target.wants/* \
	"$root/etc/systemd/system/getty.target.wants/getty@tty1.service"
# There is no udev in the image, so dev-ttyS0.device never appears and the serial getty would
# hold the boot for 90 s: mask it (the console stays the kernel's and systemd's).
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"

# Modules: everything a container runtime can ask for (fs, net, netfilter, crypto, cgroup-related),
# plus virtio; the drivers of real hardware are left out.
dst=$root/lib/modules/$kver
rm -rf "$dst"
mkdir -p "$dst/kernel/drivers/net"
cp -a "$src"/modules.builtin* "$src/modules.order" "$dst/"
for d in arch block crypto fs lib mm net virt; do
	[[ -d $src/kernel/$d ]] && cp -a "$src/kernel/$d" "$dst/kernel/"
done
for d in virtio block char md; do
	cp -a "$src/kernel/drivers/$d" "$dst/kernel/drivers/"
done
for f in "$src"/kernel/drivers/net/*; do
	case ${f##*/} in
	wireless | ethernet | usb | can | wwan | ieee802154 | fddi | hamradio | arcnet | plip | slip | ppp | wan) ;;
	*) cp -a "$f" "$dst/kernel/drivers/net/" ;;
	esac
done
chroot "$root" depmod "$kver"
