#!/usr/bin/env bash
# bench-cost.sh runs, in one go, the benchmarks of what syncs,
# reconciliations, storage and memory cost (issue 22) against the real
# servers (started by the tests on loopback, as in CI), and prints their
# ratios. The raw `go test` output of each is kept in DIR (default: a new
# temporary directory), for benchstat or a closer look.
#
#   scripts/bench-cost.sh [DIR]        # ≈ 6 minutes on 2 cores
#
# What it runs (each also runnable alone, see docs/cache.md):
#   reconcile   BenchmarkReconcileDiff, 20 nodes × 500 items of 1 KiB,
#               nothing changed / 1 % added+retracted / 1 % updated
#               offline, by difference and by the whole listing
#   sync        BenchmarkSync5000: full sync until done vs bare paging
#   footprint   BenchmarkFootprint5000: bytes per item (SQLite,
#               PostgreSQL), VmRSS of the daemon and the microblog plugin
#               after the reads and once quiet (15 s later)
#   search      BenchmarkAutoIndexTitle: an undeclared path, scan vs index
#
# The machine is shared and drifts: run it twice and compare ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
case " ${GOFLAGS:-} " in
*sqlite_fts5*) ;;
*) export GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=sqlite_fts5" ;;
esac
out="${1:-$(mktemp -d -t bench-cost.XXXXXX)}"
mkdir -p "$out"

run() { # name package pattern benchtime
	echo "== $1: go test -run '^\$' -bench '$3' -benchtime $4 $2" >&2
	go test -run '^$' -bench "$3" -benchtime "$4" -timeout 30m "$2" >"$out/$1.txt" 2>&1 || {
		cat "$out/$1.txt" >&2
		echo "bench-cost: $1 failed (output in $out/$1.txt)" >&2
		exit 1
	}
}
run reconcile ./plugins/pubsubcache/ 'BenchmarkReconcileDiff/.*/pad=1024' 1x
run sync ./plugins/pubsubcache/ 'BenchmarkSync5000' 4x
FOOTPRINT_SETTLE=15s run footprint ./cmd/backend/ 'BenchmarkFootprint5000' 1x
run search ./plugins/pubsubcache/search/ 'BenchmarkAutoIndexTitle/sqlite3' 300x

# Each benchmark line is "name N ns/op (value unit)..."; print the metrics
# that answer the issue's targets.
summary() { # file regexp-of-units
	awk -v keep="$2" '/^Benchmark/ {
		line = $1
		for (i = 5; i < NF; i += 2) if ($(i+1) ~ keep) line = line "  " $(i+1) "=" $i
		print line
	}' "$1"
}
echo
echo "reconcile (diff/full; target: nothing changed one cheap request per node, 1 % changed ≤ 0.1):"
summary "$out/reconcile.txt" 'ratio|diff-req/node|diff-iq/node'
echo "full sync vs bare paging (target ≤ 1.1):"
summary "$out/sync.txt" 'ratio|ms/op'
echo "footprint (targets: ≤ 2 345 bytes/item on SQLite, ≤ 50 MiB RSS):"
summary "$out/footprint.txt" 'bytes/item|rss|MiB'
echo "undeclared path, title equality over 5 000 items (target ≥ 5× faster than a scan):"
summary "$out/search.txt" 'ms|speedup'
echo
echo "raw output: $out"
