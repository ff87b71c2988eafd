#!/usr/bin/env bash
# The Python SDK's figures: a 100-item batch of Atom entries parsed through
# the Python plugin (the Go host's Parse call to the packed test plugin,
# AutoMTLS on) against the same parser called in process in Python, and
# the plugin's start-up until its first Describe answers.
#
# A shared machine drifts by 10-30% over minutes: this builds the Go
# benchmark once and runs the two sides alternately, each in a fresh
# process, ROUNDS times; it prints every round and the medians.
# Usage: plugin-sdk/python/bench.sh [ROUNDS] [CALLS_PER_RUN] [STARTS]   (default 12 300 20)
set -euo pipefail
rounds=${1:-12}
calls=${2:-300}
starts=${3:-20}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
export GOFLAGS="${GOFLAGS:-} -tags=sqlite_fts5" CGO_ENABLED=1
cd "$here"
go test -c -o "$bin/python.test" .
gobench() { # gobench PATTERN N: ns per op
  "$bin/python.test" -test.run '^$' -test.bench "$1" -test.benchtime "${2}x" | awk '/^Benchmark/ {print $3}'
}
for r in $(seq "$rounds"); do
  echo "$(gobench 'BenchmarkPythonParse/^atom$/^batch=100$' "$calls") $(PYTHONPATH="$here" PYTHONDONTWRITEBYTECODE=1 "$py" tests/bench_inprocess.py "$calls" 100) $(gobench 'BenchmarkPythonParse/^echo$/^batch=100$' "$calls")"
done | awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  { n++; sub_[n] = $1; inp[n] = $2; echo_[n] = $3; ratio[n] = $1 / $2
    printf "round %2d: through the plugin %.3f ms, in process %.3f ms, ratio %.2f, echo %.3f ms\n", n, $1/1e6, $2/1e6, $1/$2, $3/1e6 }
  END {
    printf "median of %d rounds per 100-item batch: through the plugin %.3f ms, in process %.3f ms, echo (protocol cost) %.3f ms\n", n, median(sub_, n)/1e6, median(inp, n)/1e6, median(echo_, n)/1e6
    printf "median ratio through the plugin / in process: %.2f\n", median(ratio, n)
  }'
for i in $(seq 5); do gobench 'BenchmarkPythonStart$' "$starts"; done | awk '
  { v[++n] = $1 } END {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
    printf "start-up to the first describe (packed plugin, median of %d runs of '"$starts"'): %.1f ms\n", n, v[(n+1)/2]/1e6 }'
