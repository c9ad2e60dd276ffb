#!/usr/bin/env bash
# A headless browser for the UI test (tests/test_ui_browser.py): installs Debian's chromium and
# chromium-driver when missing and this is root with apt-get; otherwise that test skips (CI
# requires it: QSFLOW_REQUIRE_BROWSER=1 in .ci/run).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/browser.sh: chromium is not installed and cannot be installed here (needs root and apt-get);" \
         "the browser test will skip." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "scripts/browser.sh: installed $(chromium --version)"
