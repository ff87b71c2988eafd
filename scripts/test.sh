#!/usr/bin/env bash
# Runs every test of both modules (root and plugin-sdk), after installing
# what the tests need when it is missing (Debian packages: Prosody, ejabberd,
# PostgreSQL, protoc, and the Python plugin SDK's runtime and generators). Prints the number of tests per package and per real
# server. With CI=true a skipped test, or a server suite that ran no test,
# fails the run.
#
# Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export GOFLAGS="${GOFLAGS:-} -tags=sqlite_fts5"   # go-sqlite3 with FTS5, in every build and test
export CGO_ENABLED=1

need=()
for pkg in prosody lua-dbi-sqlite3 ejabberd postgresql protobuf-compiler libprotobuf-dev systemd curl \
  python3-grpcio python3-protobuf python3-cryptography protobuf-compiler-grpc python3-setuptools python3-wheel; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian packages start system services; the tests run their own.
    for svc in prosody ejabberd postgresql; do
      (command -v systemctl >/dev/null && systemctl stop "$svc") >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
    done
  else
    echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
    [ "${CI:-}" = true ] && exit 1
  fi
fi

# The TypeScript client's test needs node and npm (Debian's nodejs is 18;
# a newer node already on PATH is kept), then its locked dependencies.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  else
    echo "node/npm missing (sudo apt-get install -y nodejs npm)" >&2
    [ "${CI:-}" = true ] && exit 1
  fi
fi
if command -v npm >/dev/null; then
  echo "== clients/ts: npm ci (cached outside the repository)"
  bash clients/ts/install.sh || { [ "${CI:-}" = true ] && exit 1; }
fi

echo "== go vet"
go vet ./...
(cd plugin-sdk && go vet ./...)

strict=()
count=()
if [ "${CI:-}" = true ]; then
  strict=(-strict -require postgres -require prosody -require ejabberd -require python)
  count=(-count=1)   # CI runs every test for real: no cached results
fi

summary=$(mktemp -d)
trap 'rm -rf "$summary"' EXIT
go build -o "$summary/testsummary" ./internal/tools/testsummary

echo "== go test (race detector on triggers and core)"
status="$summary/status"
set +e
{
  go test -json -race -timeout 25m "${count[@]}" "$@" ./triggers/... ./core/...; echo $? >>"$status"
  go test -json -timeout 25m "${count[@]}" "$@" $(go list ./... | grep -v -E '/(triggers|core)(/|$)'); echo $? >>"$status"
  (cd plugin-sdk && go test -json -timeout 10m "${count[@]}" "$@" ./...); echo $? >>"$status"
} 2>&1 | "$summary/testsummary" "${strict[@]}"
rc_summary=${PIPESTATUS[1]}
set -e
if [ "$rc_summary" != 0 ] || grep -qv '^0$' "$status"; then
  echo "tests FAILED" >&2
  exit 1
fi
echo "tests passed"
