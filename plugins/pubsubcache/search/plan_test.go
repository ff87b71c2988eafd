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
	const (
		text = "pubsubitemvalue_path_value_text"
		num  = "pubsubitemvalue_path_value_num"
		fold = "pubsubitemvalue_path_value_fold"
	)
	tests := []struct {
		name    string
		q       Query
		indexes []string // every one in the plan
	}{
		{"overlap", Query{Filters: []Filter{mustFilter(`tags overlap ["one tag"]`)}}, []string{text}},
		{"equality", Query{Filters: []Filter{mustFilter(`author.name == bob`)}}, []string{text}},
		{"between strings", Query{Filters: []Filter{mustFilter(`published between ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]`)}}, []string{text}},
		// The number index is partial (value_num IS NOT NULL).
		{"number range", Query{Filters: []Filter{mustFilter(`n < 5`)}}, []string{num}},
		{"number equality", Query{Filters: []Filter{mustFilter(`n == 5`)}}, []string{num}},
		{"number in", Query{Filters: []Filter{mustFilter(`n in [5, 6]`)}}, []string{num}},
		{"number between", Query{Filters: []Filter{mustFilter(`n between [1, 6]`)}}, []string{num}},
		// Case-insensitive filters: the partial fold index for the folds
		// that differ from their text, the text index for the others.
		{"ilike prefix", Query{Filters: []Filter{mustFilter(`author.name ilike élo%`)}}, []string{fold, text}},
		{"ilike no prefix", Query{Filters: []Filter{mustFilter(`author.name ilike %lo%`)}}, []string{fold, text}},
		{"ilike exact", Query{Filters: []Filter{mustFilter(`author.name ilike BOB`)}}, []string{fold, text}},
		{"ioverlap", Query{Filters: []Filter{mustFilter(`tags ioverlap ["été"]`)}}, []string{fold, text}},
		{"ioverlap mixed", Query{Filters: []Filter{mustFilter(`tags ioverlap ["été", "One", 1]`)}}, []string{fold, text}},
		{"ioverlap second filter", Query{Filters: []Filter{mustFilter(`published > 2026`), mustFilter(`tags ioverlap ["ONE"]`)}}, []string{"pubsubitemvalue_"}},
		// Negations and orders may use either access path of the side
		// table (by item or by path), depending on the statistics.
		{"negation", Query{Filters: []Filter{mustFilter(`tags disjoint ["one"]`)}}, []string{"pubsubitemvalue_"}},
		{"negated ilike", Query{Filters: []Filter{mustFilter(`author.name not_ilike bob`)}}, []string{"pubsubitemvalue_"}},
		{"order by path", Query{OrderBy: []Order{{Path: Path{{Key: "published"}}, Desc: true}}, Limit: 20}, []string{"pubsubitemvalue_"}},
	}
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		loadFixture(t, s)
		sr := New(s, func() []string { return fixturePaths })
		conn, explain := explainConn(t, s)
		for _, tt := range tests {
			query, args, _, err := sr.Build(tt.q)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			plan := explainPlan(t, conn, explain+query, args)
			for _, ix := range tt.indexes {
				if !strings.Contains(plan, ix) {
					t.Errorf("%s: plan does not use %s:\n%s\n%s", tt.name, ix, query, plan)
				}
			}
			if testing.Verbose() {
				t.Logf("%s:\n%s\n%s", tt.name, query, plan)
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

// explainConn returns a connection of s for EXPLAIN and the statement
// prefix of its engine; on PostgreSQL sequential scans are switched off on
// it, so that a plan shows whether an index can serve the query at all on
// small test tables. The connection is closed when the test ends.
func explainConn(t *testing.T, s *storage.Store) (*sql.Conn, string) {
	t.Helper()
	ctx := context.Background()
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if s.Dialect != storage.DriverPostgres {
		return conn, "EXPLAIN QUERY PLAN "
	}
	if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	return conn, "EXPLAIN "
}
