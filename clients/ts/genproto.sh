#!/usr/bin/env bash
# Regenerates src/gen/ (the backend.v2 API: messages and service
# descriptors) from proto/backend/v2 with Debian's protoc and the
# protoc-gen-es of package-lock.json (run install.sh first). A test fails
# when the committed code differs.
# Usage: clients/ts/genproto.sh [OUTDIR]   (default: clients/ts/src/gen)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/src/gen}
[ -x "$here/node_modules/.bin/protoc-gen-es" ] || { echo "run clients/ts/install.sh first" >&2; exit 1; }
mkdir -p "$out"
cd "$root"
protoc -I proto --plugin=protoc-gen-es="$here/node_modules/.bin/protoc-gen-es" \
  --es_out="$out" --es_opt=target=ts,import_extension=js \
  $(find proto/backend/v2 -name '*.proto' | sort)
