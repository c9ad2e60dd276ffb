#!/usr/bin/env bash
# Docker's engine for the image-function tests (tests/test_image_functions.py): installs Debian's
# docker.io when dockerd is missing and this is root with apt-get. Nothing is started here: the
# tests start a private dockerd (no bridge, no iptables) and stop it when they end.
set -euo pipefail
if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/docker.sh: Docker is not installed and cannot be installed here (needs root and apt-get);" \
         "the image-function tests will skip." >&2
    exit 0
fi
# Keep the package from starting a system-wide daemon (with its bridge and iptables rules).
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
fi
trap '[ -z "$guard" ] || rm -f "$guard"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends docker.io >/dev/null
echo "scripts/docker.sh: installed $(dockerd --version)"
