package search

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"example.org/backend/core/storage"
)

// BenchmarkAutoIndexTitle compares title equality (an undeclared path) at
// 5 000 benchmark items without and with its expression index, the two
// searches interleaved (not run in CI):
//
//	go test -tags sqlite_fts5 -run XXX -bench BenchmarkAutoIndexTitle -benchtime 200x ./plugins/pubsubcache/search/
//
// It reports the p50 of each (scan-ms, index-ms), their ratio
// (speedup), the index's size (index-KiB), how long from the start of the
// first search (which asks for it) until it exists (build-ms) and the items table's size
// (table-KiB; on SQLite the whole database). SEARCH_BENCH_PLAN=1 logs both plans.
func BenchmarkAutoIndexTitle(b *testing.B) {
	const items = 5000
	for _, e := range engines {
		b.Run(e, func(b *testing.B) {
			ctx := context.Background()
			s := openEngine(b, e)
			loadBenchItems(b, s, items)
			// A searched cache is synced: no node is reported incomplete.
			if _, err := s.DB.ExecContext(ctx, `UPDATE pubsub_nodes SET sync_state = 'complete'`); err != nil {
				b.Fatal(err)
			}
			declared := func() []string { return benchPaths }
			scan := New(s, declared)
			indexed := New(s, declared)
			a, err := NewAutoIndex(ctx, s, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			indexed.UseAutoIndex(a)
			q := Query{Filters: []Filter{mustFilter(`title == "Post 2500"`)}}
			tableKiB := relationKiB(b, s, "pubsub_items")
			asked := time.Now()
			if _, err := indexed.Search(ctx, q); err != nil {
				b.Fatal(err)
			}
			select {
			case <-a.Settled(q.Filters[0].Path, "text"):
			case <-time.After(time.Minute):
				b.Fatal("index not built")
			}
			buildMs := float64(time.Since(asked).Microseconds()) / 1000
			if len(a.readyPaths()) != 1 {
				b.Fatalf("indexes %v", a.readyPaths())
			}
			k := autoKey{path: "title", kind: autoSQLite}
			if s.Dialect == storage.DriverPostgres {
				k.kind = autoPGText
			}
			indexKiB := relationKiB(b, s, autoIndexName(k))
			if s.Dialect == storage.DriverSQLite {
				indexKiB = tableGrowthKiB(b, s, tableKiB)
			}
			for _, sr := range []*Searcher{scan, indexed} {
				res, err := sr.Search(ctx, q)
				if err != nil || len(res.Rows) != 1 || res.Rows[0].ItemID != "item-2500" {
					b.Fatalf("%v rows, %v", res.Rows, err)
				}
				if os.Getenv("SEARCH_BENCH_PLAN") != "" {
					query, args, _, _ := sr.Build(q)
					explain := "EXPLAIN QUERY PLAN "
					if s.Dialect == storage.DriverPostgres {
						explain = "EXPLAIN ANALYZE "
					}
					conn, _ := s.DB.Conn(ctx)
					conn.ExecContext(ctx, "SELECT 1 FROM pubsub_items LIMIT 1")
					b.Logf("%s\n%s", query, explainPlan(nil, conn, explain+query, args))
					conn.Close()
				}
			}
			var scanDurs, indexDurs []time.Duration
			b.ResetTimer()
			for b.Loop() {
				for _, run := range []struct {
					sr   *Searcher
					durs *[]time.Duration
				}{{scan, &scanDurs}, {indexed, &indexDurs}} {
					t := time.Now()
					if _, err := run.sr.Search(ctx, q); err != nil {
						b.Fatal(err)
					}
					*run.durs = append(*run.durs, time.Since(t))
				}
			}
			b.StopTimer()
			p50 := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2].Microseconds()) / 1000
			}
			ps, pi := p50(scanDurs), p50(indexDurs)
			b.ReportMetric(ps, "scan-ms")
			b.ReportMetric(pi, "index-ms")
			b.ReportMetric(ps/pi, "speedup")
			b.ReportMetric(indexKiB, "index-KiB")
			b.ReportMetric(buildMs, "build-ms")
			b.ReportMetric(tableKiB, "table-KiB")
		})
	}
}

// relationKiB is the size of a table or index: on PostgreSQL its
// relation; on SQLite the whole database file's pages.
func relationKiB(b *testing.B, s *storage.Store, name string) float64 {
	var n int64
	q := `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`
	args := []any{}
	if s.Dialect == storage.DriverPostgres {
		q, args = `SELECT pg_relation_size($1::regclass)`, []any{name}
	}
	if err := s.DB.QueryRow(q, args...).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1024
}

// tableGrowthKiB is how much the SQLite database grew since it was
// before KiB (the index's pages).
func tableGrowthKiB(b *testing.B, s *storage.Store, before float64) float64 {
	return relationKiB(b, s, "") - before
}
