#!/usr/bin/env bash
# Regenerates the Python code of the plugin protocol into
# backend_plugin/_proto/: the daemon's plugin.proto
# (../internal/proto/plugin/v1), go-plugin's GRPCController and GRPCStdio
# services (read from the go-plugin module that ../go.mod requires) and the
# gRPC health service (proto/health.proto). Needs Debian's protoc and
# grpc_python_plugin (apt-get install -y protobuf-compiler protobuf-compiler-grpc)
# and go (to locate the go-plugin module).
# Usage: python/genproto.sh [OUTDIR]   (default: this directory; the code
# lands in OUTDIR/backend_plugin/_proto)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
for tool in protoc grpc_python_plugin; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y protobuf-compiler protobuf-compiler-grpc" >&2; exit 1; }
done
goplugin=$(cd "$here/.." && go list -m -f '{{.Dir}}' github.com/hashicorp/go-plugin)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# Staged under backend_plugin/_proto/ so that the generated modules import
# each other as backend_plugin._proto.X (protoc derives imports from paths).
pkg=backend_plugin/_proto
mkdir -p "$stage/$pkg"
cp "$here/../internal/proto/plugin/v1/plugin.proto" "$stage/$pkg/plugin.proto"
cp "$goplugin/internal/plugin/grpc_controller.proto" "$stage/$pkg/grpc_controller.proto"
cp "$goplugin/internal/plugin/grpc_stdio.proto" "$stage/$pkg/grpc_stdio.proto"
cp "$here/proto/health.proto" "$stage/$pkg/health.proto"
mkdir -p "$out/$pkg"
cd "$stage"
protoc -I . -I "$here/proto" \
  --python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" --grpc_python_out="$out" \
  "$pkg/plugin.proto" "$pkg/grpc_controller.proto" "$pkg/grpc_stdio.proto" "$pkg/health.proto"
