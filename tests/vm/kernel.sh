#!/usr/bin/env bash
# Make sure a Debian guest kernel (vmlinuz + modules) is unpacked in the cache
# (${RAGG_VM_CACHE:-/var/cache/ragg-vm}) and print where it is.
#
# Usage: tests/vm/kernel.sh [--refresh]
#   --refresh   re-resolve linux-image-amd64 and fetch its kernel even when a
#               kernel is already cached.
#
# Output (stdout, one per line, suitable for `eval`):
#   RAGG_VM_KVER=<version>          e.g. 6.1.0-56-amd64
#   RAGG_VM_VMLINUZ=<path>          the kernel image
#   RAGG_VM_KROOT=<path>            folder holding lib/modules/<version>
# Progress and errors go to stderr. Exit status is non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"

refresh=0
case "${1:-}" in
    --refresh) refresh=1 ;;
    "") ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) vm_die "unknown argument: $1" ;;
esac

mkdir -p "$RAGG_VM_CACHE" 2>/dev/null || vm_die "cannot create cache $RAGG_VM_CACHE (set RAGG_VM_CACHE)"
[ -w "$RAGG_VM_CACHE" ] || vm_die "cache $RAGG_VM_CACHE is not writable (set RAGG_VM_CACHE)"

# print_kernel DIR: validate an unpacked kernel folder and print its variables.
print_kernel() {
    local dir="$1" kver vmlinuz
    vmlinuz="$(find "$dir/boot" -maxdepth 1 -name 'vmlinuz-*' -print -quit 2>/dev/null)"
    [ -n "$vmlinuz" ] && [ -s "$vmlinuz" ] || return 1
    kver="${vmlinuz##*/vmlinuz-}"
    [ -s "$dir/lib/modules/$kver/modules.dep" ] || return 1
    printf 'RAGG_VM_KVER=%s\nRAGG_VM_VMLINUZ=%s\nRAGG_VM_KROOT=%s\n' "$kver" "$vmlinuz" "$dir"
}

# Serialise concurrent callers (parallel CI jobs) on the cache.
exec 9>"$RAGG_VM_CACHE/.kernel.lock"
flock -w 900 9 || vm_die "timed out waiting for the lock on $RAGG_VM_CACHE"

# Fast path: a complete kernel is already cached.
if [ "$refresh" -eq 0 ] && [ -f "$RAGG_VM_CACHE/current" ]; then
    cur="$(cat "$RAGG_VM_CACHE/current")"
    if print_kernel "$RAGG_VM_CACHE/$cur"; then
        exit 0
    fi
    vm_log "cached kernel $cur is incomplete; fetching it again"
fi

vm_ensure_packages kmod

# The versioned image package that the linux-image-amd64 meta package depends on.
resolve_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
pkg="$(resolve_pkg || true)"
if [ -z "$pkg" ]; then
    [ "$(id -u)" -eq 0 ] || vm_die "apt-cache does not know linux-image-amd64; run apt-get update as root"
    vm_log "apt-cache does not know linux-image-amd64; running apt-get update"
    apt-get update -qq >&2 || vm_die "apt-get update failed"
    pkg="$(resolve_pkg || true)"
fi
[ -n "$pkg" ] || vm_die "cannot resolve the kernel package behind linux-image-amd64"

dest="$RAGG_VM_CACHE/$pkg"
if ! print_kernel "$dest" >/dev/null; then
    vm_log "fetching $pkg into $RAGG_VM_CACHE"
    work="$(mktemp -d "$RAGG_VM_CACHE/.fetch.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    # apt-get download writes into the current folder; as root it warns that
    # the download is unsandboxed, which is harmless here.
    (cd "$work" && apt-get download "$pkg" >&2) || {
        vm_log "apt-get download $pkg failed; retrying after apt-get update"
        apt-get update -qq >&2 || vm_die "apt-get update failed"
        (cd "$work" && apt-get download "$pkg" >&2) || vm_die "cannot download $pkg"
    }
    deb="$(find "$work" -maxdepth 1 -name '*.deb' -print -quit)"
    [ -n "$deb" ] || vm_die "apt-get download produced no .deb for $pkg"
    mkdir "$work/root"
    dpkg -x "$deb" "$work/root" || vm_die "dpkg -x $deb failed"
    vmlinuz="$(find "$work/root/boot" -maxdepth 1 -name 'vmlinuz-*' -print -quit)"
    [ -n "$vmlinuz" ] || vm_die "$pkg contains no boot/vmlinuz-*"
    kver="${vmlinuz##*/vmlinuz-}"
    depmod -b "$work/root" "$kver" || vm_die "depmod failed for $kver"
    rm -rf "$dest"
    mv "$work/root" "$dest"
fi
print_kernel "$dest" >/dev/null || vm_die "unpacked kernel in $dest is incomplete"
printf '%s\n' "$pkg" >"$RAGG_VM_CACHE/current.tmp"
mv "$RAGG_VM_CACHE/current.tmp" "$RAGG_VM_CACHE/current"
print_kernel "$dest"
