#!/usr/bin/env bash
# Run a host-built program or script inside a QEMU guest that has Soft-RoCE
# (rdma_rxe) RDMA devices. See tests/vm/README.
#
# Usage: tests/vm/run-in-vm.sh [options] -- SCRIPT [ARGS...]
#   -t SECONDS   wall-clock limit for the whole guest run (default 900);
#                QEMU is killed when it expires
#   -r DIR       results folder (default: a new ${TMPDIR:-/tmp}/ragg-vm.XXXXXX)
#   -e VAR=VAL   export VAR=VAL to SCRIPT in the guest (repeatable)
#   -k MODULE    load an extra kernel module (and its dependencies) in the
#                guest (repeatable)
#   -p PACKAGE   make sure an extra Debian package is installed on the host
#                before booting (repeatable); the guest sees the host's files
#   -m MB        guest memory (default 2048)
#   -q           do not stream the guest console to stderr
#   -h           this help
#
# SCRIPT runs as root in the guest, with the host's root file system
# (read-only), the checkout (read-write, same absolute path, also the working
# directory), tmpfs /tmp, and RAGG_VM=1 RAGG_VM_ADDR=198.18.0.1
# RAGG_VM_DEV=rxe0 RAGG_VM_RESULTS=<results folder> in its environment.
#
# Its combined stdout+stderr is printed on stdout when the guest is done and
# kept in <results>/output.log; the exit status is SCRIPT's exit status.
# If the guest cannot be started or no exit code comes back (boot failure,
# crash, timeout), a message starting with "ragg-vm: ERROR" is printed and
# the exit status is 125.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
checkout="$(cd "$here/../.." && pwd -P)"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"

HARNESS_FAIL=125
vm_die() { printf 'ragg-vm: ERROR: %s\n' "$*" >&2; exit "$HARNESS_FAIL"; }
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }

timeout_s=900
results=""
mem_mb=2048
quiet=0
extra_env=()
extra_mods=()
extra_pkgs=()
while getopts ':t:r:e:k:p:m:qh' opt; do
    case "$opt" in
        t) timeout_s="$OPTARG" ;;
        r) results="$OPTARG" ;;
        e) extra_env+=("$OPTARG") ;;
        k) extra_mods+=("$OPTARG") ;;
        p) extra_pkgs+=("$OPTARG") ;;
        m) mem_mb="$OPTARG" ;;
        q) quiet=1 ;;
        h) usage; exit 0 ;;
        :) usage >&2; vm_die "option -$OPTARG needs a value" ;;
        *) usage >&2; vm_die "unknown option -$OPTARG" ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || { usage >&2; vm_die "no SCRIPT given"; }
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || vm_die "-t needs a positive number of seconds"
[[ "$mem_mb" =~ ^[1-9][0-9]*$ ]] || vm_die "-m needs a number of megabytes"
for kv in "${extra_env[@]}"; do
    [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || vm_die "-e expects VAR=VALUE, got: $kv"
done

# ---- host packages --------------------------------------------------------
# The guest runs the host's binaries, so the RDMA user space must be on the
# host even though the host kernel has no RDMA support.
vm_ensure_packages qemu-system-x86 busybox-static cpio kmod iproute2 coreutils \
    rdma-core ibverbs-providers ibverbs-utils librdmacm1 rdmacm-utils perftest \
    "${extra_pkgs[@]}"

# ---- guest kernel ---------------------------------------------------------
kver="" vmlinuz="" kroot=""
kinfo="$("$here/kernel.sh")" || vm_die "cannot fetch the guest kernel (tests/vm/kernel.sh failed)"
while IFS='=' read -r k v; do
    case "$k" in
        RAGG_VM_KVER) kver="$v" ;;
        RAGG_VM_VMLINUZ) vmlinuz="$v" ;;
        RAGG_VM_KROOT) kroot="$v" ;;
    esac
done <<<"$kinfo"
if [ -z "$kver" ] || [ ! -s "$vmlinuz" ] || [ ! -d "$kroot/lib/modules/$kver" ]; then
    vm_die "tests/vm/kernel.sh gave no usable kernel"
fi
moddir="$kroot/lib/modules/$kver"

# ---- results folder -------------------------------------------------------
if [ -n "$results" ]; then
    mkdir -p "$results" || vm_die "cannot create results folder $results"
    results="$(cd "$results" && pwd -P)"
else
    results="$(mktemp -d "${TMPDIR:-/tmp}/ragg-vm.XXXXXX")" || vm_die "mktemp failed"
    results="$(cd "$results" && pwd -P)"
fi
case "$checkout$results" in
    *$'\n'*) vm_die "paths with newlines are not supported" ;;
esac
rm -f "$results/exit-code" "$results/exit-code.tmp" "$results/output.log" \
    "$results/console.log" "$results/qemu.log" "$results/timing" \
    "$results/dmesg.log" "$results/guest-error" "$results/.job.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/ragg-vm-initrd.XXXXXX")" || vm_die "mktemp failed"
qpid=""
# shellcheck disable=SC2317  # invoked from the EXIT trap
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill -TERM "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'vm_log "interrupted"; exit 130' INT TERM

# ---- the job --------------------------------------------------------------
script="$1"
shift
if [[ "$script" == */* ]] && [ -e "$script" ]; then
    script="$(cd "$(dirname "$script")" && pwd -P)/$(basename "$script")"
fi
if [[ "$script" == /* ]]; then
    case "$script" in
        "$checkout"/* | "$results"/*) ;;
        /tmp/* | /var/tmp/* | /run/* | /dev/shm/*)
            vm_die "$script is hidden in the guest (tmpfs there); put it in the checkout" ;;
    esac
fi
runner=()
if [[ "$script" == */* ]] && [ -f "$script" ] && [ ! -x "$script" ]; then
    runner=(/bin/bash)
fi
{
    printf '#!/bin/bash\n'
    printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n'
    printf 'export HOME=/tmp LANG=C.UTF-8 TERM=dumb\n'
    printf 'export RAGG_VM=1 RAGG_VM_ADDR=198.18.0.1 RAGG_VM_DEV=rxe0 RAGG_VM_RESULTS=%q\n' "$results"
    for kv in "${extra_env[@]}"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
    printf 'ulimit -l unlimited\n'
    printf 'cd %q || exit 125\n' "$checkout"
    printf 'exec'
    printf ' %q' "${runner[@]}" "$script" "$@"
    printf '\n'
} >"$results/.job.sh"

# ---- initramfs ------------------------------------------------------------
# Module names -> module files with their dependencies first, from modules.dep.
declare -A modpath=() seen=()
while IFS= read -r line; do
    f="${line%%:*}"
    n="${f##*/}"
    n="${n%%.ko*}"
    modpath["${n//-/_}"]="$line"
done <"$moddir/modules.dep"
builtin_has() { grep -Eq "/${1}\.ko\$" "$moddir/modules.builtin" 2>/dev/null; }
order=()
add_file() { # add_file PATH-IN-MODULES.DEP (with its dependencies)
    local f="$1" n line dep
    [ -z "${seen[$f]:-}" ] || return 0
    seen[$f]=1
    n="${f##*/}"
    n="${n%%.ko*}"
    line="${modpath[${n//-/_}]}"
    for dep in ${line#*:}; do
        add_file "$dep"
    done
    order+=("$f")
}
add_mod() { # add_mod NAME
    local n="${1//-/_}"
    if [ -n "${modpath[$n]:-}" ]; then
        add_file "${modpath[$n]%%:*}"
    elif builtin_has "$1" || builtin_has "$n"; then
        return 0
    else
        vm_die "kernel module $1 not found for $kver"
    fi
}
# crc32_generic must be loaded before rdma_rxe: rxe asks the crypto API for
# crc32 and the kernel cannot auto-load it from the initramfs.
for m in virtio_pci 9pnet_virtio 9p crc32_generic veth rdma_rxe ib_uverbs rdma_ucm \
    "${extra_mods[@]}"; do
    add_mod "$m"
done

mkdir -p "$work/bin" "$work/etc/ragg-vm" "$work/proc" "$work/sys" "$work/dev" \
    "$work/newroot" "$work/lib/modules/$kver"
cp /bin/busybox "$work/bin/busybox"
ln -s busybox "$work/bin/sh"
install -m 0755 "$here/guest-init.sh" "$work/init"
printf '%s\n%s\n' "$checkout" "$results" >"$work/etc/ragg-vm/paths"
: >"$work/etc/ragg-vm/modules"
for f in "${order[@]}"; do
    mkdir -p "$work/lib/modules/$kver/$(dirname "$f")"
    case "$f" in
        *.ko) cp "$moddir/$f" "$work/lib/modules/$kver/$f" ;;
        *.ko.xz) xz -dc "$moddir/$f" >"$work/lib/modules/$kver/${f%.xz}" ;;
        *.ko.zst) zstd -qdc "$moddir/$f" >"$work/lib/modules/$kver/${f%.zst}" ;;
        *.ko.gz) gzip -dc "$moddir/$f" >"$work/lib/modules/$kver/${f%.gz}" ;;
        *) vm_die "unsupported module file $f" ;;
    esac
    printf '%s\n' "${f%.ko*}.ko" >>"$work/etc/ragg-vm/modules"
done
(cd "$work" && find . -mindepth 1 ! -name initrd.img | LC_ALL=C sort \
    | cpio -o -H newc --quiet -R 0:0) >"$work/initrd.img" || vm_die "cpio failed"

# ---- boot -----------------------------------------------------------------
# no_timer_check: under emulation on a busy host the kernel's IO-APIC timer
# check can miss its ticks and panic ("timer doesn't work through
# Interrupt-remapped IO-APIC"); the emulated timer works, so skip the check.
if [ "$(id -u)" -eq 0 ]; then sm=passthrough; else sm=none; fi
qesc() { printf '%s' "${1//,/,,}"; }
# shellcheck disable=SC2054  # commas are part of QEMU's option syntax
qemu=(qemu-system-x86_64
    -accel tcg,thread=multi -cpu max -smp 2 -m "$mem_mb"
    -nographic -no-reboot -nic none
    -kernel "$vmlinuz" -initrd "$work/initrd.img"
    -append "console=ttyS0 panic=-1 quiet no_timer_check"
    -virtfs "local,path=/,mount_tag=hostroot,security_model=$sm,readonly=on,multidevs=remap"
    -virtfs "local,path=$(qesc "$checkout"),mount_tag=checkout,security_model=$sm,multidevs=remap"
    -virtfs "local,path=$(qesc "$results"),mount_tag=results,security_model=$sm,multidevs=remap")

vm_log "kernel $kver, checkout $checkout, results $results, timeout ${timeout_s}s"
start=$SECONDS
timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null >"$results/console.log" 2>"$results/qemu.log" &
qpid=$!
tail_pid=""
if [ "$quiet" -eq 0 ]; then
    tail -n +1 -F --pid="$qpid" "$results/console.log" >&2 2>/dev/null &
    tail_pid=$!
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=""
if [ -n "$tail_pid" ]; then
    wait "$tail_pid" 2>/dev/null || true
fi
elapsed=$((SECONDS - start))

fail_with_logs() {
    if [ "$quiet" -ne 0 ] && [ -s "$results/console.log" ]; then
        printf '%s\n' "---- guest console (last 60 lines) ----" >&2
        tail -n 60 "$results/console.log" >&2
    fi
    if [ -s "$results/qemu.log" ]; then
        printf '%s\n' "---- qemu stderr ----" >&2
        cat "$results/qemu.log" >&2
    fi
    if [ -s "$results/guest-error" ]; then
        vm_log "guest setup error: $(cat "$results/guest-error")"
    fi
    vm_die "$*"
}
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
    fail_with_logs "timed out after ${timeout_s}s; QEMU was killed (results in $results)"
fi
if [ ! -s "$results/exit-code" ]; then
    fail_with_logs "the guest returned no exit code (QEMU status $qrc after ${elapsed}s; boot failure or crash?); results in $results"
fi
code="$(cat "$results/exit-code")"
[[ "$code" =~ ^[0-9]+$ ]] || fail_with_logs "the guest returned a malformed exit code '$code'"

[ -f "$results/output.log" ] && cat "$results/output.log"
vm_log "guest script exited with $code; boot+run ${elapsed}s wall clock; results in $results"
exit "$code"
