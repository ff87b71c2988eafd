#!/usr/bin/env bash
# Builds the backend binary into bin/ and runs the daemon on the embedded
# default (SQLite in $XDG_DATA_HOME/backend). Extra arguments go to
# `backend serve` (e.g. --data-dir DIR, --config FILE).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CGO_ENABLED=1
echo "== building bin/backend (the first build compiles SQLite: a few minutes)" >&2
go build -tags sqlite_fts5 -o bin/backend ./cmd/backend
echo "== starting the daemon; in another terminal: bin/backend status" >&2
exec bin/backend serve "$@"
