package search

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
)

// Benchmarks of the issue: 100 000 microblog-like items over 100 nodes,
// on both engines (not run in CI):
//
//	go test -tags sqlite_fts5 -run XXX -bench BenchmarkSearch -benchtime 200x ./plugins/pubsubcache/search/
//
// Each reports p50-ms and p95-ms over its iterations.
// SEARCH_BENCH_SQLITE_CACHE_KIB=65536 sets SQLite's page cache (default
// 2 MiB per connection); SEARCH_BENCH_PLAN=1 logs the query plans.

const (
	benchItems = 100_000
	benchNodes = 100
)

// benchPaths are the microblog analyser's declared paths.
var benchPaths = []string{"tags", "author.name", "author.jid", "published", "updated"}

var benchWords = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
	"kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
	"whiskey", "xray", "yankee", "café", "crème", "élan", "über", "naïve"}

// loadBench stores the benchmark items: item i is in node i%100, published
// 1000 items a day, tagged "one tag" when i%100 == 7 (1 %), and its text
// holds "zebra" when i%100 == 13 (1 %).
func loadBench(b *testing.B, s *storage.Store) { loadBenchItems(b, s, benchItems) }

// loadBenchItems stores the first n benchmark items (n a multiple of 1000).
func loadBenchItems(b *testing.B, s *storage.Store, n int) {
	ctx := context.Background()
	start := time.Now()
	c := s.Client
	prof := c.Profile.Create().SetName("alice").SaveX(ctx)
	nodes := make([]*ent.PubsubNode, benchNodes)
	for n := range nodes {
		nodes[n] = c.PubsubNode.Create().SetProfile(prof).SetService(fmt.Sprintf("user%d@example", n)).
			SetName("urn:xmpp:microblog:0").SetType("blog").SaveX(ctx)
	}
	paths, _ := parsePaths(benchPaths)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 1000
	for lo := 0; lo < n; lo += batch {
		err := s.WithTx(ctx, func(tx *ent.Tx) error {
			creates := make([]*ent.PubsubItemCreate, 0, batch)
			docs := make([]map[string]any, 0, batch)
			for i := lo; i < lo+batch; i++ {
				pub := base.Add(time.Duration(i) * 24 * time.Hour / 1000).Format(time.RFC3339)
				tags := []any{benchWords[i%len(benchWords)], fmt.Sprintf("tag%d", i%211)}
				if i%100 == 7 {
					tags = append(tags, "one tag")
				}
				text := fmt.Sprintf("%s %s %s post number %d", benchWords[i%len(benchWords)], benchWords[(i/7)%len(benchWords)], benchWords[(i/13)%len(benchWords)], i)
				if i%100 == 13 {
					text += " zebra"
				}
				doc := map[string]any{
					"id": fmt.Sprintf("item-%d", i), "atom_id": fmt.Sprintf("tag:example,2026:%d", i),
					"title": fmt.Sprintf("Post %d", i), "title_xhtml": nil, "content": text, "content_xhtml": nil,
					"published": pub, "updated": pub, "language": "en",
					"author": map[string]any{"name": fmt.Sprintf("User %d", i%benchNodes), "uri": nil, "email": nil,
						"jid": fmt.Sprintf("user%d@example", i%benchNodes), "jid_verified": true},
					"tags": tags, "links": []any{}, "comments": []any{},
				}
				docs = append(docs, doc)
				payload := []byte(fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>Post %d</title><content>%s</content></entry>", i, text))
				creates = append(creates, tx.PubsubItem.Create().SetNodeID(nodes[i%benchNodes].ID).SetItemID(fmt.Sprintf("item-%d", i)).
					SetPayload(payload).
					SetParsed(parsedColumn(s, doc, payload)).SetParseState("ok").SetSearchText("Post "+fmt.Sprint(i)+" "+text).SetCreatedAt(base.Add(time.Duration(i)*time.Second)))
			}
			items, err := tx.PubsubItem.CreateBulk(creates...).Save(ctx)
			if err != nil {
				return err
			}
			var vals []*ent.PubsubItemValueCreate
			flush := func() error {
				if len(vals) == 0 {
					return nil
				}
				err := tx.PubsubItemValue.CreateBulk(vals...).Exec(ctx)
				vals = vals[:0]
				return err
			}
			for k, it := range items {
				for _, v := range values(any(docs[k]), paths) {
					cr := tx.PubsubItemValue.Create().SetItemID(it.ID).SetPath(v.path).SetRole(v.role).SetKind(v.kind).
						SetValueText(v.text).SetNillableValueNum(v.num)
					if v.fold != nil {
						cr.SetValueFold(v.fold)
					}
					vals = append(vals, cr)
					if len(vals) == 2000 {
						if err := flush(); err != nil {
							return err
						}
					}
				}
			}
			return flush()
		})
		if err != nil {
			b.Fatalf("load: %v", err)
		}
	}
	// Steady state: statistics, and on PostgreSQL the GIN pending list
	// flushed and the visibility map set (what autovacuum does).
	maintenance := "ANALYZE"
	if s.Dialect == storage.DriverPostgres {
		maintenance = "VACUUM ANALYZE"
	}
	if _, err := s.DB.ExecContext(ctx, maintenance); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: loaded %d items in %v", s.Dialect, n, time.Since(start).Round(time.Millisecond))
}

func BenchmarkSearch(b *testing.B) {
	desc := func(k string) Order { o, _ := ParseOrder(k + ":desc"); return o }
	rank, _ := ParseOrder("rank")
	queries := []struct {
		name string
		q    Query
		want int
	}{
		{"a_tags_overlap_published_desc", Query{Filters: []Filter{mustFilter(`tags overlap ["one tag"]`)}, OrderBy: []Order{desc("published")}, Limit: 20}, 20},
		{"b_fts_rank", Query{FTS: "zebra", OrderBy: []Order{rank}, Limit: 20}, 20},
		{"c_published_between_day", Query{Filters: []Filter{mustFilter(`published between ["2026-02-10T00:00:00Z", "2026-02-11T00:00:00Z"]`)}, Limit: 20}, 20},
		// Case-insensitive filters: on strings that are not their own
		// fold ("User 7…") and on strings that are ("café"); a negated
		// filter and a sort on a path read the side table by item.
		{"d_author_ilike_prefix", Query{Filters: []Filter{mustFilter(`author.name ilike "USER 7%"`)}, OrderBy: []Order{desc("published")}, Limit: 20}, 20},
		{"e_tags_ioverlap", Query{Filters: []Filter{mustFilter(`tags ioverlap ["CAFÉ"]`)}, Limit: 20}, 20},
		{"f_tags_disjoint", Query{Filters: []Filter{mustFilter(`tags disjoint ["one tag", "alpha"]`)}, Limit: 20}, 20},
		{"g_published_desc", Query{OrderBy: []Order{desc("published")}, Limit: 20}, 20},
	}
	for _, e := range engines {
		b.Run(e, func(b *testing.B) {
			s := openEngine(b, e)
			loadBench(b, s)
			if v := os.Getenv("SEARCH_BENCH_SQLITE_CACHE_KIB"); v != "" && s.Dialect == storage.DriverSQLite {
				// The page cache is per connection: pin the pool to one
				// connection and size its cache (what a DSN option would
				// do for every connection).
				s.DB.SetMaxOpenConns(1)
				if _, err := s.DB.Exec("PRAGMA cache_size = -" + v); err != nil {
					b.Fatal(err)
				}
			}
			sr := New(s, func() []string { return benchPaths })
			ctx := context.Background()
			for _, qq := range queries {
				b.Run(qq.name, func(b *testing.B) {
					// Warm up and check the answer.
					rows, err := sr.rows(ctx, qq.q)
					if err != nil || len(rows) != qq.want {
						b.Fatalf("%d rows, %v", len(rows), err)
					}
					if os.Getenv("SEARCH_BENCH_PLAN") != "" {
						query, args, _, _ := sr.Build(qq.q)
						explain := "EXPLAIN QUERY PLAN "
						if s.Dialect == storage.DriverPostgres {
							explain = "EXPLAIN ANALYZE "
						}
						conn, _ := s.DB.Conn(ctx)
						b.Logf("%s\n%s", query, explainPlan(nil, conn, explain+query, args))
						conn.Close()
					}
					durs := make([]time.Duration, 0, b.N)
					b.ResetTimer()
					for b.Loop() {
						t := time.Now()
						if _, err := sr.Search(ctx, qq.q); err != nil {
							b.Fatal(err)
						}
						durs = append(durs, time.Since(t))
					}
					b.StopTimer()
					slices.Sort(durs)
					pct := func(p float64) float64 {
						return float64(durs[int(p*float64(len(durs)-1))].Microseconds()) / 1000
					}
					b.ReportMetric(pct(0.50), "p50-ms")
					b.ReportMetric(pct(0.95), "p95-ms")
				})
			}
		})
	}
}
