# Sourced by the tools/install-*.sh scripts: apt_install NAME PURPOSE PACKAGE... installs
# Debian's PACKAGEs (as root, or through sudo), saying "installing Debian's NAME for
# PURPOSE". The package lists may be missing or stale on a fresh machine; the install
# retries once after refreshing them.

apt_install() {
    local name=$1 purpose=$2
    shift 2
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
    fi
    echo "installing Debian's $name for $purpose"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends "$@"; then
        $sudo apt-get update
        $sudo apt-get install -y --no-install-recommends "$@"
    fi
}
