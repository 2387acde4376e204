#!/usr/bin/env bash
# Installs Debian's container runtime and image tools for the real node (make cluster,
# make images), once: a no-op when every command is already there. Nothing is started
# or enabled here: containerd runs under the stack's state dir, started by
# emulsion_devstack.node, never as the system service.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins podman buildah debootstrap iptables)
COMMANDS=(/usr/bin/containerd /usr/sbin/runc /usr/lib/cni/bridge /usr/bin/podman /usr/bin/buildah /usr/sbin/debootstrap /usr/sbin/iptables)

missing=0
for command in "${COMMANDS[@]}"; do
    [ -x "$command" ] || missing=1
done
if [ "$missing" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "installing Debian's ${PACKAGES[*]} for the real node"
export DEBIAN_FRONTEND=noninteractive
# Debian's containerd package enables its system service; policy-rc.d keeps apt from
# starting it (and podman's units), so nothing of the host changes beyond the files.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
# The package lists may be missing or stale on a fresh machine; the install retries
# once after refreshing them.
if ! $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi
for command in "${COMMANDS[@]}"; do
    [ -x "$command" ] || { echo "missing after install: $command" >&2; exit 1; }
done
