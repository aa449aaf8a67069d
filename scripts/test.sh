#!/usr/bin/env bash
# Set up, then lint and run the whole test suite.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
"$PY" -m ruff check .
"$PY" -m pytest -q "$@"
