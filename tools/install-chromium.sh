#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/web), once: a no-op when
# /usr/bin/chromium is already there. Playwright drives this executable; its own
# browser download is never used (it cannot be reached from here).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
source "$(dirname "$0")/apt-install.sh"
apt_install chromium "the browser tests" chromium fonts-dejavu-core
/usr/bin/chromium --version
