#!/usr/bin/env bash
# Regenerates the Go code of the plugin wire protocol from
# internal/proto/**/*.proto with Debian's protoc (apt-get install
# protobuf-compiler) and the generator plugins pinned as `tool` directives in
# plugin-sdk/go.mod.
# Usage: scripts/genproto.sh [OUTDIR]   (default: the plugin-sdk module root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install -y protobuf-compiler" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd "$root"
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
mkdir -p "$out"
protoc -I internal/proto \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt=module=example.org/backend/plugin-sdk \
  --go-grpc_out="$out" --go-grpc_opt=module=example.org/backend/plugin-sdk \
  $(cd internal/proto && find . -name '*.proto' | sed 's|^\./||' | sort)
