#!/usr/bin/env bash
# Set up, then lint, format-check, type-check and run the whole test suite.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
# System packages the tests drive: a real browser (dashboard), the compose validator, data.
need=()
command -v chromium >/dev/null || need+=(chromium chromium-driver)
command -v docker-compose >/dev/null || need+=(docker-compose)
# the pooler the connection test puts in front of PostgreSQL (tests/e2e/test_pgbouncer.py)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
# Debian's Fashion-MNIST: the loader's checksum test reads the packaged files
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ -z "$sudo" ] || command -v sudo >/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: cannot install ${need[*]} (not root, no sudo); their tests will skip" >&2
  fi
fi
"$PY" -m ruff check .
"$PY" -m ruff format --check .
# types: strict for core, jobs and api, the rest checked (pyproject.toml [tool.mypy])
"$PY" -m mypy
"$PY" -m pytest -q "$@"
