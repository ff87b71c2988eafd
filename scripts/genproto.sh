#!/usr/bin/env bash
# Regenerates the Go code of the API from proto/ with Debian's protoc and the
# generator plugins pinned as `tool` directives in go.mod.
# Usage: scripts/genproto.sh [OUTDIR]   (default: the repository root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install -y protobuf-compiler libprotobuf-dev" >&2; exit 1; }
[ -f /usr/include/google/protobuf/timestamp.proto ] || { echo "the well-known .proto files are missing: apt-get install -y libprotobuf-dev" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd "$root"
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-connect-go" connectrpc.com/connect/cmd/protoc-gen-connect-go
mkdir -p "$out"
protoc -I proto \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-connect-go="$bin/protoc-gen-connect-go" \
  --go_out="$out" --go_opt=module=example.org/backend \
  --connect-go_out="$out" --connect-go_opt=module=example.org/backend \
  $(find proto -name '*.proto' | sort)
