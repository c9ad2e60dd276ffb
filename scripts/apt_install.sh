# Sourced by docker.sh, browser.sh and postgres.sh: install Debian packages for tests that need them.
#   can_apt_install SCRIPT NAME SKIPS || exit 0   says why not and fails unless this is root with apt-get
#   apt_install PACKAGE...                        installs them; a package's own service is not started

can_apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/$1: $2 is not installed and cannot be installed here (needs root and apt-get);" \
             "$3." >&2
        return 1
    fi
}

apt_install() {
    # Keep packages from starting system-wide services (qsflow's tests start private ones on 127.0.0.1).
    _apt_guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        _apt_guard=/usr/sbin/policy-rc.d
    fi
    trap '[ -z "$_apt_guard" ] || rm -f "$_apt_guard"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
