#!/bin/sh
# shellcheck shell=sh
# /init of the guest initramfs built by run-in-vm.sh (runs as PID 1 under
# busybox). Not meant to be run on a host.
#
# /etc/ragg-vm/paths : line 1 = checkout path, line 2 = results path
# /etc/ragg-vm/modules: kernel modules (paths under /lib/modules/<ver>), in
#                       load order
# The job itself is <results>/.job.sh, written by run-in-vm.sh.

/bin/busybox --install -s /bin
export PATH=/bin
R=/newroot
NET_ADDR=198.18.0.1/24
RXE_DEV=rxe0

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

log() { echo "ragg-vm-guest: $*"; }

finish() {
    sync
    log "powering off"
    poweroff -f
    sleep 30
}

# Failures before the job has run: say why on the console; the host notices
# the missing exit code and fails.
die() {
    log "ERROR: $*"
    if [ -n "${RESULTS:-}" ] && [ -d "$R$RESULTS" ]; then
        echo "$*" >"$R$RESULTS/guest-error" 2>/dev/null
        dmesg >"$R$RESULTS/dmesg.log" 2>/dev/null
    fi
    finish
}

{ read -r CHECKOUT && read -r RESULTS; } </etc/ragg-vm/paths || die "cannot read /etc/ragg-vm/paths"
KVER="$(uname -r)"

while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lib/modules/$KVER/$mod" || die "insmod $mod failed"
done </etc/ragg-vm/modules

ninep_opts=trans=virtio,version=9p2000.L,msize=262144
mkdir -p "$R"
mount -t 9p -o "$ninep_opts,cache=loose,ro" hostroot "$R" || die "cannot mount the host root (9p)"
mount -t proc proc "$R/proc" || die "mount proc"
mount -t sysfs sysfs "$R/sys" || die "mount sysfs"
mount -t devtmpfs devtmpfs "$R/dev" || die "mount devtmpfs"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts devpts "$R/dev/pts" 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
for d in /tmp /var/tmp /run; do
    mount -t tmpfs -o mode=1777 tmpfs "$R$d" || die "mount tmpfs on $d"
done
# The checkout and results folders may live under /tmp (now a tmpfs): create
# the mount points there; elsewhere they already exist in the host root.
for share in checkout results; do
    if [ "$share" = checkout ]; then p="$CHECKOUT"; else p="$RESULTS"; fi
    mkdir -p "$R$p" 2>/dev/null
    mount -t 9p -o "$ninep_opts,cache=mmap" "$share" "$R$p" || die "cannot mount $share at $p"
done
rm -f "$R$RESULTS/guest-error"

# Run a command with the host's tools (iproute2, rdma). Busybox's chroot
# would prefer its own applets for bare names such as "ip", so go through
# the host's /bin/sh.
host() { chroot "$R" /bin/sh -c 'PATH=/usr/sbin:/usr/bin:/sbin:/bin; exec "$@"' sh "$@"; }

# Soft-RoCE on a veth pair: one rxe device carries both ends of a connection
# (traffic to 198.18.0.1 from inside the guest is looped back by rxe).
host ip link set lo up || die "ip link set lo up"
host ip link add va type veth peer name vb || die "cannot create veth va/vb"
host ip addr add "$NET_ADDR" dev va || die "ip addr add"
host ip link set va up || die "ip link set va up"
host ip link set vb up || die "ip link set vb up"
host rdma link add "$RXE_DEV" type rxe netdev va || die "rdma link add $RXE_DEV failed"
state=/sys/class/infiniband/$RXE_DEV/ports/1/state
i=0
until grep -q ACTIVE "$state" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 100 ] || die "$RXE_DEV port did not become ACTIVE ($(cat "$state" 2>/dev/null))"
    sleep 0.1
done

read -r up_start _ </proc/uptime
log "environment ready after ${up_start}s; running the job"
rm -f "$R$RESULTS/exit-code" "$R$RESULTS/exit-code.tmp"
# The exit code is written as soon as the job's main process ends; tee may
# be kept alive by background processes the job left behind, so it is given
# only a short grace period to drain.
(
    chroot "$R" /bin/bash "$RESULTS/.job.sh" </dev/null 2>&1
    echo "$?" >"$R$RESULTS/exit-code.tmp"
    mv "$R$RESULTS/exit-code.tmp" "$R$RESULTS/exit-code"
) | tee "$R$RESULTS/output.log" &
tee_pid=$!
while [ ! -f "$R$RESULTS/exit-code" ]; do
    kill -0 "$tee_pid" 2>/dev/null || break
    sleep 0.2
done
i=0
while kill -0 "$tee_pid" 2>/dev/null && [ "$i" -lt 30 ]; do
    sleep 0.1
    i=$((i + 1))
done
read -r up_end _ </proc/uptime
log "job finished with exit code $(cat "$R$RESULTS/exit-code" 2>/dev/null || echo '?') after ${up_end}s uptime"
printf 'boot_to_job_s=%s\nuptime_at_end_s=%s\n' "$up_start" "$up_end" >"$R$RESULTS/timing"
dmesg >"$R$RESULTS/dmesg.log" 2>/dev/null
finish
