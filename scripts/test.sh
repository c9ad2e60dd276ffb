#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (real Prefect server, real Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/docker.sh   # Docker for the image-function tests, when it can be installed
bash scripts/browser.sh  # headless chromium for the UI test, when it can be installed
bash scripts/postgres.sh # PostgreSQL for the cluster-mode tests, when it can be installed
exec .venv/bin/python -m pytest -q "$@"
