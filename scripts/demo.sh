#!/usr/bin/env bash
# Set up qsflow and run the main job: the seed's parallel transpile program, on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/run_transpile.py "$@"
