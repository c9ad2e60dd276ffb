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
# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set (as on some CI machines) Python
# would otherwise recompile Prefect, Qiskit and Ray from source in every job process (seconds each).
"$UV" pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[test]"
.venv/bin/python -m compileall -q flows tasks blocks deployments serverless_compat >/dev/null
