#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (real Prefect server, real Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
