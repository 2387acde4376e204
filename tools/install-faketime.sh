#!/usr/bin/env bash
# Installs Debian's faketime for the skewed-clock test (tests/security/test_skewed_clock.py,
# which runs one API process minutes ahead of the others), once: a no-op when
# /usr/bin/faketime is already there.
set -euo pipefail

if [ -x /usr/bin/faketime ]; then
    exit 0
fi
source "$(dirname "$0")/apt-install.sh"
apt_install faketime "the skewed-clock test" faketime
/usr/bin/faketime -f +60 date
