#!/usr/bin/env bash
# Create .venv with qsflow and its test tools installed (idempotent; fast when already done).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! command -v uv >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check uv
fi
UV="$(command -v uv || "$PYTHON" -c 'import uv, sys; sys.stdout.write(uv.find_uv_bin())')"
[ -x .venv/bin/python ] || "$UV" venv --quiet --python "$PYTHON" .venv
"$UV" pip install --quiet --python .venv/bin/python -e ".[test]"
