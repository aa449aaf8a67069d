#!/usr/bin/env bash
# Set up, then run the main job: the toy-problem reproduction (Figures 1-4) into out/toy.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
"$PY" -m cli.main reproduce toy --out "${1:-out/toy}"
