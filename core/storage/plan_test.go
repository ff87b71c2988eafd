package storage

import (
	"context"
	"strings"
	"testing"
)

// TestQueriesUseIndexes asserts on the query plans that the hot queries of
// the cache use their indexes: reading a node in service order, by update
// or creation time, and full-text search. On PostgreSQL sequential scans
// are disabled for the session so that a tiny table still shows whether
// the index is usable.
func TestQueriesUseIndexes(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		pgQuery   string            // when PostgreSQL needs another query
		wantIndex map[string]string // per dialect
	}{
		{
			name:      "node by position",
			query:     `SELECT id FROM pubsub_items WHERE node_id = 1 AND position >= 10 ORDER BY position LIMIT 20`,
			wantIndex: map[string]string{DriverSQLite: "pubsubitem_node_id_position", DriverPostgres: "pubsubitem_node_id_position"},
		},
		{
			name:      "node by modification",
			query:     `SELECT id FROM pubsub_items WHERE node_id = 1 ORDER BY updated_at DESC LIMIT 20`,
			wantIndex: map[string]string{DriverSQLite: "pubsubitem_node_id_updated_at", DriverPostgres: "pubsubitem_node_id_updated_at"},
		},
		{
			name:      "node by creation",
			query:     `SELECT id FROM pubsub_items WHERE node_id = 1 ORDER BY created_at LIMIT 20`,
			wantIndex: map[string]string{DriverSQLite: "pubsubitem_node_id_created_at", DriverPostgres: "pubsubitem_node_id_created_at"},
		},
		{
			name:      "full text",
			query:     `SELECT rowid FROM pubsub_items_fts WHERE pubsub_items_fts MATCH '"cafe"'`,
			pgQuery:   `SELECT item_id FROM pubsub_items_search WHERE tsv @@ plainto_tsquery('simple', 'cafe')`,
			wantIndex: map[string]string{DriverSQLite: "VIRTUAL TABLE INDEX", DriverPostgres: "pubsub_items_search_tsv"},
		},
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := openStore(t, e.config(t))
		conn, err := s.DB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		explain := "EXPLAIN QUERY PLAN "
		if e.name == DriverPostgres {
			explain = "EXPLAIN "
			if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off`); err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range tests {
			q := tt.query
			if tt.pgQuery != "" && e.name == DriverPostgres {
				q = tt.pgQuery
			}
			rows, err := conn.QueryContext(ctx, explain+q)
			if err != nil {
				t.Fatalf("%s: explain: %v", tt.name, err)
			}
			cols, _ := rows.Columns()
			var plan []string
			for rows.Next() {
				vals := make([]any, len(cols))
				for i := range vals {
					vals[i] = new(any)
				}
				if err := rows.Scan(vals...); err != nil {
					t.Fatal(err)
				}
				for _, v := range vals {
					if s, ok := (*v.(*any)).(string); ok {
						plan = append(plan, s)
					}
				}
			}
			rows.Close()
			got := strings.Join(plan, "\n")
			if want := tt.wantIndex[e.name]; !strings.Contains(got, want) {
				t.Errorf("%s: plan does not use %s:\n%s", tt.name, want, got)
			}
		}
	})
}
