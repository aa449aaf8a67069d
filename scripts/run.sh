#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: `bilevel serve` (SQLite and an
# in-process executor under out/state), submit examples/toy.json, watch it to the end, and
# keep serving the API and the dashboard until Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
STATE="${BILEVEL_STATE_DIR:-$ROOT/out/state}"
PORT="${PORT:-8000}"
URL="http://127.0.0.1:$PORT"
"$PY" -m cli.main serve --state-dir "$STATE" --port "$PORT" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT INT TERM
"$PY" - "$URL" <<'PY'
import sys, time, urllib.request
for _ in range(300):  # the first start creates the database: allow a while
    try:
        urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("bilevel serve did not come up")
PY
id=$("$PY" -m cli.main submit examples/toy.json --url "$URL" --state-dir "$STATE")
"$PY" -m cli.main watch "$id" --url "$URL" --state-dir "$STATE"
"$PY" -m cli.main trace "$id" --url "$URL" --state-dir "$STATE" --max-points 10
echo "job $id done; the dashboard link above stays up until Ctrl-C"
wait "$server"
