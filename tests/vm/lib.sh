# shellcheck shell=bash
# Shared helpers for the tests/vm host-side scripts (kernel.sh, run-in-vm.sh).
# Sourced, not executed.

RAGG_VM_CACHE="${RAGG_VM_CACHE:-/var/cache/ragg-vm}"

vm_log() { printf 'ragg-vm: %s\n' "$*" >&2; }
vm_die() { printf 'ragg-vm: ERROR: %s\n' "$*" >&2; exit 1; }

# vm_ensure_packages PKG...: install the Debian packages that are missing.
# Nothing is touched when everything is already installed.
vm_ensure_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        vm_die "missing packages: ${missing[*]} (run as root, or install them first)"
    fi
    vm_log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || vm_die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || vm_die "apt-get install ${missing[*]} failed"
}
