#!/usr/bin/env bash
# Measures the cost of parsing through a plugin process against the same
# parser called in process: 100-item batches of Atom entries to the
# microblog parser (issue target: at most 1.5x per item), plus the echo
# plugin (no parsing: the protocol's own cost).
#
# Shared machines drift by 10-30% over minutes, so one long run per side
# compares two different machines. This builds the benchmark binary once and
# runs the two sides alternately, each in a fresh process, ROUNDS times; it
# prints every round's ratio and the medians.
# Usage: scripts/bench-parse-ratio.sh [ROUNDS] [CALLS_PER_RUN]   (default 16 500)
set -euo pipefail
rounds=${1:-16}
calls=${2:-500}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd "$root"
go test -c -o "$bin/host.test" ./host
cd host # the benchmark re-executes its binary as the plugin from here
run() { # run NAME: ns per 100-item call
  "$bin/host.test" -test.run '^$' -test.bench "BenchmarkParse/^$1\$/batch=100\$" \
    -test.benchtime "${calls}x" | awk '/^Benchmark/ {print $3}'
}
for r in $(seq "$rounds"); do
  echo "$(run microblog) $(run microblog-inprocess) $(run echo)"
done | awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  { n++; sub_[n] = $1; inp[n] = $2; echo_[n] = $3; ratio[n] = $1 / $2
    printf "round %2d: subprocess %.3f ms, in process %.3f ms, ratio %.2f, echo %.3f ms\n", n, $1/1e6, $2/1e6, $1/$2, $3/1e6 }
  END {
    printf "median of %d rounds: subprocess %.3f ms, in process %.3f ms, echo %.3f ms per 100 items\n", n, median(sub_, n)/1e6, median(inp, n)/1e6, median(echo_, n)/1e6
    printf "median ratio subprocess/in process: %.2f (target <= 1.5)\n", median(ratio, n)
  }'
