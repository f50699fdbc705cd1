#!/bin/bash
# Kinglet's VM checks, run inside the guest by kinglet-vm-checks.service after systemd started
# the enabled kinglet.service at boot. Each check prints `PASS NAME (T s)` or `FAIL NAME: why` (also
# on the serial console), then its own output indented; the script fails when any check fails.
# The test driving the VM (tests/tests/vm_systemd.rs) requires every check it knows by name.
#
# The guest runs under TCG emulation: process starts are ~30x slower than on a host, so every
# wait below is generous; each wait polls and ends as soon as its condition holds.
set -u
export PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
fails=0
out=$(mktemp)

say() {
	echo "$*"
	echo "$*" >/dev/ttyS0
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# check NAME FUNCTION [ARGS]: run FUNCTION in this shell (so it can set variables for later checks).
check() {
	local name=$1
	shift
	local start rc
	start=$(uptime_s)
	"$@" >"$out" 2>&1
	rc=$?
	local took
	took=$(awk -v a="$start" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
	if [ $rc -eq 0 ]; then
		say "PASS $name (${took} s)"
	else
		say "FAIL $name (${took} s): $(tail -n 1 "$out")"
		fails=$((fails + 1))
	fi
	sed 's/^/    /' "$out"
}

# wait_until SECS WHAT COMMAND...: poll COMMAND every second until it succeeds.
wait_until() {
	local secs=$1 what=$2
	shift 2
	local deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge $deadline ]; then
			echo "timed out after ${secs} s waiting for $what"
			return 1
		fi
		sleep 1
	done
}

# jpod POD FILTER: a jq filter over `kinglet get pod POD -o json`.
jpod() { kinglet get pod "$1" -o json 2>/dev/null | jq -r "$2"; }

main_pid() { systemctl show -p MainPID --value kinglet; }

# The cgroup directory of container NAME of POD (from its containerID).
container_cgroup() {
	local id dir
	id=$(jpod "$1" ".status.containerStatuses[] | select(.name == \"$2\") | .containerID")
	id=${id#kinglet://}
	[ -n "$id" ] || return 1
	dir=$(find /sys/fs/cgroup/kinglet -mindepth 2 -maxdepth 2 -type d -name "$id" | head -n 1)
	[ -n "$dir" ] && echo "$dir"
}

# The web server's process, found through its container's cgroup.
server_pid() {
	local dir pid
	dir=$(container_cgroup web server) || return 1
	pid=$(head -n 1 "$dir/cgroup.procs")
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = httpd ] && echo "$pid"
}

web_running() {
	[ "$(jpod web '[.status.phase, ([.status.containerStatuses[]? | select(.state.running)] | length)] | @tsv')" = "Running	2" ]
}

# An HTTP request to the pod's IP from the guest (the host side of the pod network). busybox nc,
# not wget: the static busybox's wget crashes resolving names through the guest's glibc NSS.
http_get() {
	printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" | busybox nc -w 5 "$1" 8080
}

web_answers() {
	http_get "$1" | grep -q 'Hello from a Kinglet pod'
}

daemon_answers() { kinglet get pods >/dev/null; }

# --- the service ---------------------------------------------------------------------------------
service_active() {
	local enabled
	enabled=$(systemctl is-enabled kinglet)
	echo "is-enabled: $enabled"
	[ "$enabled" = enabled ] || return 1
	wait_until 120 "kinglet.service active with its socket" \
		sh -c 'systemctl is-active -q kinglet && test -S /run/kinglet/kinglet.sock' || return 1
	wait_until 60 "the daemon answering on its socket" daemon_answers || return 1
	systemctl show kinglet -p MainPID -p NRestarts -p ControlGroup -p ActiveEnterTimestampMonotonic
}

# Type=notify: active only after READY=1; the status line and the watchdog are set.
service_notify() {
	local show
	show=$(systemctl show kinglet -p Type -p NotifyAccess -p WatchdogUSec -p ActiveState -p StatusText)
	echo "$show"
	echo "$show" | grep -qx 'Type=notify' || { echo "not Type=notify"; return 1; }
	echo "$show" | grep -qx 'ActiveState=active' || { echo "not active"; return 1; }
	echo "$show" | grep -q '^StatusText=serving CRI on /run/kinglet/kinglet.sock' ||
		{ echo "no serving status"; return 1; }
	echo "$show" | grep -Eq '^WatchdogUSec=(1min|60s|60000000)$' || { echo "no 60 s watchdog"; return 1; }
}

socket_mode() {
	local mode
	mode=$(stat -c '%a %F' /run/kinglet/kinglet.sock)
	echo "socket: $mode"
	[ "$mode" = "660 socket" ]
}

cgroup_v2() {
	local fs
	fs=$(stat -fc %T /sys/fs/cgroup)
	echo "/sys/fs/cgroup: $fs; controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
	echo "daemon cgroup: $(cat "/proc/$(main_pid)/cgroup")"
	[ "$fs" = cgroup2fs ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers &&
		grep -qw cpu /sys/fs/cgroup/cgroup.controllers
}

import_image() {
	kinglet image import /payload/busybox.tar || return 1
	kinglet image ls | tee /dev/stderr | grep -q 'kinglet.test/busybox'
}

# --- the example pod from the manifests directory ------------------------------------------------
manifest_pod_running() {
	cp /payload/web-pod.yaml /etc/kinglet/manifests/web-pod.yaml
	wait_until 300 "pod web Running with both containers running" web_running
	local rc=$?
	kinglet get pods -o wide
	return $rc
}

web_ip=
pod_ip_answers() {
	web_ip=$(jpod web .status.podIP)
	echo "pod IP: $web_ip"
	case $web_ip in 10.85.*) ;; *) echo "pod IP $web_ip is not in the default pod CIDR"; return 1 ;; esac
	wait_until 60 "http://$web_ip:8080/ answering" web_answers "$web_ip"
	local rc=$?
	http_get "$web_ip"
	return $rc
}

client_log() {
	wait_until 90 "the client's log line" \
		sh -c 'kinglet logs web -c client | grep -q "hello admin: <h1>Hello from a Kinglet pod</h1>"'
	local rc=$?
	kinglet logs web -c client | tail -n 3
	return $rc
}

# A hung daemon (SIGSTOP: no thread runs, so no health check passes and no WATCHDOG=1 is sent)
# is aborted by systemd's watchdog after WatchdogSec and restarted; the containers are kept.
watchdog_restarts_hung() {
	local pid0 main0 n0
	pid0=$(server_pid) || { echo "no server process"; return 1; }
	main0=$(main_pid)
	n0=$(systemctl show -p NRestarts --value kinglet)
	kill -STOP "$main0" || return 1
	echo "daemon $main0 stopped at uptime $(uptime_s) s"
	wait_until 200 "the watchdog restarting kinglet.service" sh -c \
		"[ \$(systemctl show -p NRestarts --value kinglet) -gt $n0 ] && systemctl is-active -q kinglet" || return 1
	echo "restarted at uptime $(uptime_s) s: daemon pid $(main_pid); NRestarts $n0 -> $(systemctl show -p NRestarts --value kinglet)"
	journalctl -b -u kinglet --no-pager | grep -i watchdog | tail -n 2
	journalctl -b -u kinglet --no-pager | grep -qi 'watchdog timeout' || { echo "not restarted by the watchdog"; return 1; }
	pod_kept "$pid0"
}

# --- the daemon's restarts keep the containers ---------------------------------------------------
# After a restart of the daemon: the same server process, no container restarted, still serving.
pod_kept() {
	local before=$1 now counts
	wait_until 60 "the daemon answering again" daemon_answers || return 1
	wait_until 60 "pod web Running" web_running || return 1
	now=$(server_pid)
	echo "httpd pid before: $before, after: $now"
	[ -n "$now" ] && [ "$now" = "$before" ] || { echo "the server's process changed"; return 1; }
	counts=$(jpod web '[.status.containerStatuses[].restartCount] | map(tostring) | join(",")')
	echo "restart counts: $counts"
	[ "$counts" = "0,0" ] || { echo "containers were restarted: $counts"; return 1; }
	web_answers "$web_ip" || { echo "the pod stopped answering"; return 1; }
}

restart_keeps_container() {
	local pid0 main0 main1
	pid0=$(server_pid) || { echo "no server process"; return 1; }
	main0=$(main_pid)
	systemctl restart kinglet || return 1
	main1=$(main_pid)
	echo "daemon pid before: $main0, after: $main1"
	[ "$main1" != "$main0" ] && [ "$main1" != 0 ] || { echo "the daemon was not restarted"; return 1; }
	pod_kept "$pid0"
}

kill9_restarts_service() {
	local pid0 main0 n0
	pid0=$(server_pid) || { echo "no server process"; return 1; }
	main0=$(main_pid)
	n0=$(systemctl show -p NRestarts --value kinglet)
	# The daemon's process only, as a crash or the OOM killer would: a plain `systemctl kill`
	# signals every process of the unit, the containers' shims included (README.md, tests/vm).
	systemctl kill -s KILL --kill-who=main kinglet || return 1
	wait_until 120 "systemd restarting kinglet.service" sh -c \
		"[ \$(systemctl show -p NRestarts --value kinglet) -gt $n0 ] && systemctl is-active -q kinglet" || return 1
	echo "daemon pid before: $main0, after: $(main_pid); NRestarts $n0 -> $(systemctl show -p NRestarts --value kinglet)"
	pod_kept "$pid0"
}

# --- cgroup v2 limits ----------------------------------------------------------------------------
apply_test_pods() {
	kinglet apply -f /payload/pods/
}

limits_cg=
limits_running() {
	[ "$(jpod limits '.status.containerStatuses[0].state.running != null')" = true ] &&
		limits_cg=$(container_cgroup limits c)
}

# cgroup_file FILE EXPECTED: the limits pod's container cgroup holds EXPECTED in FILE.
cgroup_file() {
	if [ -z "$limits_cg" ]; then
		wait_until 240 "pod limits running" limits_running || return 1
	fi
	local got
	got=$(cat "$limits_cg/$1")
	echo "$limits_cg/$1: $got (expected $2)"
	echo "processes: $(cat "$limits_cg/cgroup.procs" | tr '\n' ' ')"
	[ -n "$(cat "$limits_cg/cgroup.procs")" ] && [ "$got" = "$2" ]
}

# The kubelet's CPU shares for a request of M millicores (1024 per core), and the conversion of
# shares to cgroup v2 cpu.weight that libcontainer, runc >= 1.3 and crun use: a curve from
# (2 shares, weight 1) to (262144, 10000), rounded up (250m: 256 shares, weight 35).
cpu_weight_for_millis() {
	awk -v m="$1" 'BEGIN {
		s = int(m * 1024 / 1000); l = log(s) / log(2)
		w = exp(log(10) * ((l * l + 125 * l) / 612 - 7 / 34))
		printf "%d\n", (w == int(w)) ? w : int(w) + 1
	}'
}

oom_killed() {
	wait_until 240 "pod oom's container OOMKilled" sh -c \
		"kinglet get pod oom -o json | jq -e '.status.containerStatuses[0] | [.state.terminated, .lastState.terminated] | map(select(. != null and .reason == \"OOMKilled\" and .exitCode == 137)) | length > 0'"
	local rc=$?
	jpod oom '.status.containerStatuses[0] | {restartCount, state, lastState}'
	return $rc
}

# Restart 1 comes at once, restart 2 after 10 s, restart 3 only 20 s after that: once two
# restarts are seen, the container waits in CrashLoopBackOff and ten more seconds bring no third.
crash_back_off() {
	wait_until 240 "pod crashloop restarted twice" sh -c \
		"[ \$(kinglet get pod crashloop -o json | jq '.status.containerStatuses[0].restartCount') -ge 2 ]" || return 1
	local seen=
	for _ in $(seq 10); do
		[ "$(jpod crashloop '.status.containerStatuses[0].state.waiting.reason')" = CrashLoopBackOff ] && seen=1
		sleep 1
	done
	local n age max
	n=$(jpod crashloop '.status.containerStatuses[0].restartCount')
	age=$(($(date +%s) - $(date -d "$(jpod crashloop '.metadata.creationTimestamp')" +%s)))
	# Restarts at 0, 10, 30, 70, 150 s...: at most this many in the pod's age, however slow
	# the earlier checks were (without back-off there would be one every few seconds).
	max=$(awk -v t="$age" 'BEGIN { n = 1; while (10 * (2 ^ n - 1) <= t) n++; print n }')
	jpod crashloop '.status.containerStatuses[0] | {restartCount, state, lastState}'
	kinglet describe pod crashloop | tail -n 8
	[ -n "$seen" ] || { echo "never saw waiting reason CrashLoopBackOff"; return 1; }
	[ "$n" -le "$max" ] || { echo "restarted $n times in ${age} s (back-off allows $max)"; return 1; }
}

# Under systemd (JOURNAL_STREAM), the daemon logs through journald's native protocol: the
# fields of its events become journal fields, so a pod's and a container's lines are found by
# field.
journald_fields() {
	local lines
	lines=$(journalctl -b -u kinglet --no-pager -o verbose POD=web CONTAINER=server)
	echo "$lines" | grep -m 2 -E 'MESSAGE=|PRIORITY='
	echo "$lines" | grep -q 'MESSAGE=container started' ||
		{ echo "no 'container started' entry with POD=web CONTAINER=server"; return 1; }
	journalctl -b -u kinglet -F POD | grep -qx web || { echo "POD=web not among the journal's POD values"; return 1; }
	# Not twice: the text format is not written to the journal as well.
	! journalctl -b -u kinglet --no-pager -o cat | grep -qE ' INFO kinglet(::|_kubelet)' ||
		{ echo "text log lines in the journal besides the native entries"; return 1; }
}

# What `kinglet reset` must leave behind: nothing of the installation (but /etc/kinglet).
nothing_left() {
	local left="" pid
	ip link show kinglet0 >/dev/null 2>&1 && left="$left bridge-kinglet0"
	nft list table ip kinglet >/dev/null 2>&1 && left="$left nft-table"
	[ -e /run/kinglet ] && left="$left /run/kinglet"
	[ -e /var/lib/kinglet ] && left="$left /var/lib/kinglet"
	grep -qE ' /(run|var/lib)/kinglet' /proc/self/mountinfo && left="$left mounts"
	pgrep -f '(^|/)kinglet(-shim|-pod-init)?( |$)' && left="$left processes"
	for pid in "$@"; do [ -d "/proc/$pid" ] && left="$left container-process-$pid"; done
	find /sys/fs/cgroup/kinglet -mindepth 1 -type d 2>/dev/null | grep . && left="$left cgroups"
	[ -d /etc/kinglet ] || left="$left (/etc/kinglet-removed)"
	[ -z "$left" ] || { echo "left after reset:$left"; return 1; }
}

# Stop the service, reset: every container (they outlive the daemon) and trace goes.
reset_removes_everything() {
	local pid
	pid=$(server_pid) || { echo "the web server is not running before the reset"; return 1; }
	systemctl disable --now kinglet || return 1
	[ -d "/proc/$pid" ] || { echo "the container did not outlive the daemon"; return 1; }
	kinglet reset --yes || return 1
	nothing_left "$pid"
}

# The .deb of this checkout (scripts/deb.sh): install, start (Type=notify: start returns at
# READY=1), run the web pod, stop, reset, purge.
deb_install_run_reset() {
	local pid
	rm -f /etc/systemd/system/kinglet.service /etc/systemd/system/multi-user.target.wants/kinglet.service
	rm -f /usr/local/bin/kinglet /usr/local/bin/kinglet-shim /usr/local/bin/kinglet-pod-init
	hash -r
	mv /etc/kinglet/manifests/web-pod.yaml /tmp/ 2>/dev/null
	dpkg -i /payload/kinglet.deb || return 1
	systemctl daemon-reload
	[ "$(systemctl show -p FragmentPath --value kinglet)" = /lib/systemd/system/kinglet.service ] ||
		{ echo "kinglet.service is not the package's"; return 1; }
	systemctl enable --now kinglet || return 1
	[ "$(systemctl is-active kinglet)" = active ] || { echo "not active after start"; return 1; }
	[ "$(command -v kinglet)" = /usr/bin/kinglet ] || { echo "kinglet is $(command -v kinglet)"; return 1; }
	kinglet image import /payload/busybox.tar || return 1
	cp /tmp/web-pod.yaml /etc/kinglet/manifests/web-pod.yaml
	wait_until 300 "the web pod Running from the package's daemon" web_running || return 1
	pid=$(server_pid) || return 1
	systemctl disable --now kinglet || return 1
	kinglet reset --yes || return 1
	nothing_left "$pid" || return 1
	dpkg --purge kinglet || return 1
	[ ! -e /usr/bin/kinglet ] || { echo "/usr/bin/kinglet left after purge"; return 1; }
}

say "checks start at uptime $(uptime_s) s; kernel $(uname -r)"
check service-active service_active
check service-notify service_notify
check socket-mode-0660 socket_mode
check cgroup-v2-unified cgroup_v2
check image-import import_image
check manifest-pod-running manifest_pod_running
check pod-ip-answers pod_ip_answers
check pod-client-log client_log
check restart-keeps-container restart_keeps_container
check kill9-service-restarted kill9_restarts_service
check watchdog-restarts-hung watchdog_restarts_hung
check apply-test-pods apply_test_pods
check cgroup-memory-max cgroup_file memory.max $((64 << 20))
check cgroup-cpu-max cgroup_file cpu.max "50000 100000"
check cgroup-cpu-weight cgroup_file cpu.weight "$(cpu_weight_for_millis 250)"
check oom-killed oom_killed
check crash-back-off crash_back_off
check journald-fields journald_fields

{
	echo "---- kinglet get pods -o wide"
	kinglet get pods -o wide
	echo "---- systemctl status kinglet"
	systemctl status kinglet --no-pager -l | head -n 20
	echo "---- failed units"
	systemctl --failed --no-legend --no-pager
} 2>&1
journalctl -b -u kinglet --no-pager -o short-monotonic >/results/kinglet.journal 2>&1
check reset-removes-everything reset_removes_everything
check deb-install-run-reset deb_install_run_reset
say "checks end at uptime $(uptime_s) s: $fails failed"
[ $fails -eq 0 ]
