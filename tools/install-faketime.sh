#!/usr/bin/env bash
# Installs Debian's faketime for the skewed-clock test (tests/security/test_skewed_clock.py,
# which runs one API process minutes ahead of the others), once: a no-op when
# /usr/bin/faketime is already there.
set -euo pipefail

if [ -x /usr/bin/faketime ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "installing Debian's faketime for the skewed-clock test"
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine; the install retries
# once after refreshing them.
if ! $SUDO apt-get install -y --no-install-recommends faketime; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends faketime
fi
/usr/bin/faketime -f +60 date
