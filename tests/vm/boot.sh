#!/usr/bin/env bash
# Boot the guest image once: the guest copies PAYLOAD/root over its root file system before
# systemd starts (initramfs.sh), and the units found there run the test; results come back in
# RESULTS (9p, read-write) and on the serial console.
#
# Usage: boot.sh IMAGE_DIR PAYLOAD_DIR RESULTS_DIR [TIMEOUT_SECS]   (default 600)
#
# RESULTS/console.log is the serial console. The guest writes RESULTS/exit-code and prints
# `VMTEST-RESULT: rc=N` when its test unit ends, then powers off. The exit status is the
# guest's; 124 when the guest did not power off within the timeout (QEMU is killed), 125 when it
# powered off without a result. Either way the console's tail is printed to stderr.
#
# QEMU runs on TCG (software emulation): /dev/kvm on these machines has no usable
# virtualisation, and TCG works everywhere, at ~10x the CPU time and ~30x the process-start time
# of the host. KVM is used only where the CPU advertises vmx/svm and KVM is the real one.
set -uo pipefail

die() {
	echo "vm/boot: $*" >&2
	exit 2
}

[[ $# -ge 3 && $# -le 4 ]] || { echo "usage: $0 IMAGE_DIR PAYLOAD_DIR RESULTS_DIR [TIMEOUT_SECS]" >&2; exit 2; }
img=$(realpath "$1")
payload=$(realpath "$2")
results=$(realpath -m "$3")
limit=${4:-600}
command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found: run scripts/setup-debian.sh (Debian package qemu-system-x86)"
for f in vmlinux initrd.gz rootfs.ext4; do [[ -f $img/$f ]] || die "no $img/$f (run build-image.sh)"; done
rm -rf "$results"
mkdir -p "$results"

accel=(-accel tcg,thread=multi -cpu max)
if [[ -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm ]]; then
	accel=(-accel kvm -cpu host)
fi

start=$EPOCHREALTIME
# -snapshot: writes go to a temporary overlay, the image stays as built.
timeout --kill-after=10 "$limit" qemu-system-x86_64 "${accel[@]}" -m 2G -smp 2 \
	-nographic -no-reboot -nic none \
	-kernel "$img/vmlinux" -initrd "$img/initrd.gz" \
	-append "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4 systemd.show_status=1" \
	-drive "file=$img/rootfs.ext4,format=raw,if=virtio,snapshot=on" \
	-virtfs "local,path=$payload,mount_tag=payload,security_model=none,readonly=on" \
	-virtfs "local,path=$results,mount_tag=results,security_model=none" \
	>"$results/console.log" 2>&1 </dev/null
qrc=$?
secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

tail_console() {
	echo "---- last 60 lines of the serial console ($results/console.log) ----" >&2
	tail -n 60 "$results/console.log" | tr -d '\r' >&2
	echo "----" >&2
}
if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
	echo "vm/boot: the guest did not finish within ${limit} s (QEMU killed)" >&2
	tail_console
	exit 124
fi
if [[ ! -f $results/exit-code ]]; then
	echo "vm/boot: the guest stopped without a result after ${secs} s (QEMU exit $qrc)" >&2
	tail_console
	exit 125
fi
rc=$(cat "$results/exit-code")
echo "vm/boot: guest finished in ${secs} s with rc=$rc" >&2
[[ $rc -eq 0 ]] || tail_console
exit "$rc"
