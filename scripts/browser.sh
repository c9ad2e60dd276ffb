#!/usr/bin/env bash
# A headless browser for the UI test (tests/test_ui_browser.py): installs Debian's chromium and
# chromium-driver when missing and this is root with apt-get; otherwise that test skips (CI
# requires it: QSFLOW_REQUIRE_BROWSER=1 in .ci/run).
set -euo pipefail
source "$(dirname "$0")/apt_install.sh"
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
can_apt_install browser.sh chromium "the browser test will skip" || exit 0
apt_install chromium chromium-driver
echo "scripts/browser.sh: installed $(chromium --version)"
