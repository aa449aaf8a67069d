#!/usr/bin/env bash
# Source me: installs the project into the active virtual environment, or into .venv at the
# repository root when none is active, and sets PY to that environment's python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY="$ROOT/.venv/bin/python"
fi
# torch first: the CPU wheel on this disk; a bare `torch` requirement would pull a CUDA build.
"$PY" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# the example problem plugin (entry point bilevel.problems): the tests run its kind end to end
"$PY" -m pip install --quiet --disable-pip-version-check -e examples/plugins/bilevel_digits_mlp
export PY
