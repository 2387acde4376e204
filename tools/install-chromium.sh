#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/web), once: a no-op when
# /usr/bin/chromium is already there. Playwright drives this executable; its own
# browser download is never used (it cannot be reached from here).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine; the install retries
# once after refreshing them.
if ! $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi
/usr/bin/chromium --version
