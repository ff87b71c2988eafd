package storage

import (
	"context"
	"slices"
	"testing"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
)

// searchRows counts the rows of the dialect's full-text index.
func searchRows(t *testing.T, s *Store) int {
	t.Helper()
	if s.Dialect == DriverPostgres {
		return countRows(t, s.DB, "pubsub_items_search")
	}
	// Contentless FTS5: one docsize row per indexed document.
	return countRows(t, s.DB, "pubsub_items_fts_docsize")
}

func TestSearchTerms(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"café crème", []string{"café", "crème"}},
		{`"a" OR b* NEAR(c)`, []string{"a", "OR", "b", "NEAR", "c"}},
		{"node:xyz-1", []string{"node", "xyz", "1"}},
	}
	for _, tt := range tests {
		if got := SearchTerms(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("SearchTerms(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFullTextIndexFollowsItems inserts, upserts, updates and deletes items
// and checks the full-text index and MatchText after each step, on both
// engines, including diacritic- and case-insensitive matches.
func TestFullTextIndexFollowsItems(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := openStore(t, e.config(t))
		c := s.Client
		prof := c.Profile.Create().SetName("alice").SaveX(ctx)
		node := c.PubsubNode.Create().SetProfile(prof).SetService("pubsub.localhost").SetName("blog").SaveX(ctx)
		add := func(id, text string) {
			t.Helper()
			err := c.PubsubItem.Create().SetNode(node).SetItemID(id).SetPayload([]byte("<item/>")).
				SetSearchText(text).
				OnConflictColumns(pubsubitem.FieldNodeID, pubsubitem.FieldItemID).UpdateNewValues().Exec(ctx)
			if err != nil {
				t.Fatalf("upsert %s: %v", id, err)
			}
		}
		match := func(q string) []string {
			t.Helper()
			ids, err := c.PubsubItem.Query().Where(s.MatchText(q)).Order(ent.Asc(pubsubitem.FieldItemID)).
				Select(pubsubitem.FieldItemID).Strings(ctx)
			if err != nil {
				t.Fatalf("MatchText(%q): %v", q, err)
			}
			return ids
		}
		add("a", "Crème brûlée at the Café")
		add("b", "plain coffee")
		add("c", "CAFE society")

		steps := []struct {
			name  string
			do    func()
			query string
			want  []string
			rows  int
		}{
			{"diacritic-insensitive", nil, "cafe", []string{"a", "c"}, 3},
			{"query with diacritics", nil, "CAFÉ", []string{"a", "c"}, 3},
			{"all terms required", nil, "creme cafe", []string{"a"}, 3},
			{"FTS syntax is not interpreted", nil, `brulee OR "coffee"`, nil, 3},
			{"no terms", nil, "  -- ", nil, 3},
			{"upsert changes text", func() { add("b", "café au lait") }, "cafe", []string{"a", "b", "c"}, 3},
			{"old text is gone", nil, "coffee", nil, 3},
			{"update", func() {
				c.PubsubItem.Update().Where(pubsubitem.ItemID("a")).SetSearchText("tea").ExecX(ctx)
			}, "cafe", []string{"b", "c"}, 3},
			{"update of another column keeps the index", func() {
				c.PubsubItem.Update().Where(pubsubitem.ItemID("c")).SetPosition(9).ExecX(ctx)
			}, "society", []string{"c"}, 3},
			{"delete", func() {
				c.PubsubItem.Delete().Where(pubsubitem.ItemID("c")).ExecX(ctx)
			}, "cafe", []string{"b"}, 2},
			{"a space is a text without terms", func() {
				c.PubsubItem.Update().Where(pubsubitem.ItemID("b")).SetSearchText(" ").ExecX(ctx)
			}, "cafe", nil, 2},
			{"a new text after it", func() {
				c.PubsubItem.Update().Where(pubsubitem.ItemID("b")).SetSearchText("lait").ExecX(ctx)
			}, "lait", []string{"b"}, 2},
			{"node delete cascades", func() {
				c.PubsubNode.DeleteOne(node).ExecX(ctx)
			}, "cafe", nil, 0},
		}
		for _, st := range steps {
			if st.do != nil {
				st.do()
			}
			if s.Dialect == DriverSQLite {
				// The text is in the index only: the row's column hands it
				// over and is blanked, and '' keeps the index as it is.
				var kept int
				if err := s.DB.QueryRowContext(ctx, "SELECT count(*) FROM pubsub_items WHERE search_text <> ''").Scan(&kept); err != nil || kept != 0 {
					t.Errorf("%s: %d rows keep their search text (%v)", st.name, kept, err)
				}
				if st.name == "delete" {
					c.PubsubItem.Update().Where(pubsubitem.ItemID("b")).SetSearchText("").ExecX(ctx)
					add("b", "")
				}
			}
			if got := match(st.query); !slices.Equal(got, st.want) {
				t.Errorf("%s: MatchText(%q) = %q, want %q", st.name, st.query, got, st.want)
			}
			if got := searchRows(t, s); got != st.rows {
				t.Errorf("%s: %d rows in the full-text index, want %d", st.name, got, st.rows)
			}
		}
	})
}
