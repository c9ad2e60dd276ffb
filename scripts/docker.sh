#!/usr/bin/env bash
# Docker's engine for the image-function tests (tests/test_image_functions.py): installs Debian's
# docker.io when dockerd is missing and this is root with apt-get. Nothing is started here: the
# tests start a private dockerd (no bridge, no iptables) and stop it when they end.
set -euo pipefail
source "$(dirname "$0")/apt_install.sh"
if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
    exit 0
fi
can_apt_install docker.sh Docker "the image-function tests will skip" || exit 0
apt_install docker.io
echo "scripts/docker.sh: installed $(dockerd --version)"
