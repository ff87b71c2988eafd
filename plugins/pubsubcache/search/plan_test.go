package search

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"example.org/backend/core/storage"
)

// TestIndexedFiltersUseSideTableIndexes asserts on the query plans that
// filters and orders on declared (indexed) paths use the side table's
// indexes, on both engines. On PostgreSQL sequential scans are disabled
// for the session so that a small table still shows whether an index is
// usable.
func TestIndexedFiltersUseSideTableIndexes(t *testing.T) {
	tests := []struct {
		name  string
		q     Query
		index string
	}{
		{"overlap", Query{Filters: []Filter{mustFilter(`tags overlap ["one tag"]`)}}, "pubsubitemvalue_path_value_text"},
		{"equality", Query{Filters: []Filter{mustFilter(`author.name == bob`)}}, "pubsubitemvalue_path_value_text"},
		{"between strings", Query{Filters: []Filter{mustFilter(`published between ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]`)}}, "pubsubitemvalue_path_value_text"},
		{"number range", Query{Filters: []Filter{mustFilter(`n < 5`)}}, "pubsubitemvalue_path_value_num"},
		{"ilike prefix", Query{Filters: []Filter{mustFilter(`author.name ilike élo%`)}}, "pubsubitemvalue_path_value_fold"},
		{"ioverlap", Query{Filters: []Filter{mustFilter(`tags ioverlap ["été"]`)}}, "pubsubitemvalue_path_value_fold"},
		// Negations and orders may use either access path of the side
		// table (by item or by path), depending on the statistics.
		{"negation", Query{Filters: []Filter{mustFilter(`tags disjoint ["one"]`)}}, "pubsubitemvalue_"},
		{"order by path", Query{OrderBy: []Order{{Path: Path{{Key: "published"}}, Desc: true}}, Limit: 20}, "pubsubitemvalue_"},
	}
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		loadFixture(t, s)
		sr := New(s, func() []string { return fixturePaths })
		conn, err := s.DB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		explain := "EXPLAIN QUERY PLAN "
		if s.Dialect == storage.DriverPostgres {
			explain = "EXPLAIN "
			if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off`); err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range tests {
			query, args, _, err := sr.Build(tt.q)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			plan := explainPlan(t, conn, explain+query, args)
			if !strings.Contains(plan, tt.index) {
				t.Errorf("%s: plan does not use %s:\n%s\n%s", tt.name, tt.index, query, plan)
			}
		}
	})
}

func explainPlan(t testing.TB, conn *sql.Conn, q string, args []any) string {
	rows, err := conn.QueryContext(context.Background(), q, args...)
	if err != nil {
		if t == nil {
			return err.Error()
		}
		t.Fatalf("explain: %v\n%s", err, q)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var plan []string
	for rows.Next() {
		vals := make([]any, len(cols))
		for i := range vals {
			vals[i] = new(any)
		}
		if err := rows.Scan(vals...); err != nil {
			return err.Error()
		}
		for _, v := range vals {
			switch x := (*v.(*any)).(type) {
			case string:
				plan = append(plan, x)
			case []byte:
				plan = append(plan, string(x))
			}
		}
	}
	return strings.Join(plan, "\n")
}
