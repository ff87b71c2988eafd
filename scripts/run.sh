#!/usr/bin/env bash
# The main job on a fresh machine: builds bin/backend, then (bin/quickstart)
# starts a private Prosody on loopback with a demo account (installing
# Prosody when missing and run as root), starts the daemon on the embedded
# SQLite, creates and connects profile "demo", publishes a few blog posts,
# syncs them into the cache and prints what to type next. Ctrl-C stops it
# all.
#
#   scripts/run.sh                          # the demo
#   scripts/run.sh --jid you@example.org    # your account instead (password in $BACKEND_DEMO_PASSWORD): nothing installed
#                  [--host H] [--port N] [--ca-file PEM]
#   scripts/run.sh --data-dir DIR --socket PATH --xmpp-port N --log FILE --profile NAME
#   scripts/run.sh --once                   # set up, then stop everything (scripts, CI)
#
# To run the daemon alone: bin/backend serve (see README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "run.sh: Go is not installed: install Go ≥ 1.26 (https://go.dev/dl/) and gcc, then run again" >&2
    exit 1
fi
export CGO_ENABLED=1
echo "== building bin/backend (the first build compiles SQLite: a few minutes)" >&2
go build -tags sqlite_fts5 -o bin/backend ./cmd/backend
go build -tags sqlite_fts5 -o bin/quickstart ./internal/tools/quickstart
# The microblog plugin's own executable beside the daemon's: the daemon runs
# it instead of re-executing itself (a smaller process; docs/operations.md).
(cd plugin-sdk && go build -o ../bin/backend-plugin-microblog ./plugins/microblog/cmd/backend-plugin-microblog)
exec bin/quickstart --backend bin/backend "$@"
