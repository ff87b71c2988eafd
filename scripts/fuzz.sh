#!/usr/bin/env bash
# Runs every Fuzz target of both modules (root and plugin-sdk) for TIME each
# (a Go duration, default 30s), then copies the inputs the fuzzer found
# interesting into the package's testdata/fuzz/TARGET/ (at most 64 new
# files per target), so that they are committed and replayed as seeds by
# every plain `go test` (and so by CI). A failing input is written there by
# `go test` itself and fails the script.
# Usage: scripts/fuzz.sh [TIME]     e.g. scripts/fuzz.sh 5m
set -euo pipefail
fuzztime=${1:-30s}
root=$(cd "$(dirname "$0")/.." && pwd)
export GOFLAGS=-tags=sqlite_fts5 CGO_ENABLED=1
cache=$(go env GOCACHE)/fuzz
status=0
for mod in "$root" "$root/plugin-sdk"; do
	cd "$mod"
	for dir in $(go list -f '{{.Dir}}' ./...); do
		targets=$( (grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null || true) | sed 's/^func //' | sort -u)
		[ -n "$targets" ] || continue
		pkg=$(go list "$dir")
		for target in $targets; do
			echo "== $pkg $target ($fuzztime)"
			if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir"; then
				echo "FAIL: $pkg $target (the failing input is in $dir/testdata/fuzz/$target)" >&2
				status=1
			fi
			src=$cache/$pkg/$target
			dst=$dir/testdata/fuzz/$target
			if [ -d "$src" ]; then
				mkdir -p "$dst"
				ls -t "$src" | head -64 | while read -r f; do
					[ -e "$dst/$f" ] || cp "$src/$f" "$dst/$f"
				done
			fi
		done
	done
done
exit $status
