package storage

import (
	"context"
	"strings"
	"testing"
)

// TestSlimItemValuesMigration puts side-table rows written before
// slim_item_values (every string with its fold, equal or not) into a
// database at the version before it, opens it (which migrates), and checks
// that a fold equal to its text became NULL and the others stayed.
func TestSlimItemValuesMigration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		cfg := e.config(t)
		c := clientBefore(t, e, cfg, func(f migrationFile) bool { return strings.HasSuffix(f.Name, "_slim_item_values") })
		p := c.Profile.Create().SetName("alice").SaveX(ctx)
		n := c.PubsubNode.Create().SetProfile(p).SetService("pubsub.example.org").SetName("blog").SaveX(ctx)
		it := c.PubsubItem.Create().SetNode(n).SetItemID("a").SetPayload([]byte("<entry/>")).SaveX(ctx)
		rows := []struct {
			path, kind, text, fold string // fold "" for none
			wantFold               bool
		}{
			{"author.name", "s", "alice", "alice", false},
			{"title", "s", "Élodie", "élodie", true},
			{"published", "s", "2026-01-01T00:00:00Z", "2026-01-01t00:00:00z", true},
			{"n", "n", "5", "", false},
		}
		for _, r := range rows {
			cr := c.PubsubItemValue.Create().SetItem(it).SetPath(r.path).SetRole(1).SetKind(r.kind).SetValueText([]byte(r.text))
			if r.fold != "" {
				cr.SetValueFold([]byte(r.fold))
			}
			cr.ExecX(ctx)
		}
		c.Close()

		s, err := Open(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("Open (migrates): %v", err)
		}
		defer s.Close()
		for _, r := range rows {
			var stored bool
			q := `SELECT value_fold IS NOT NULL FROM pubsub_item_values WHERE path = ?`
			if e.name == DriverPostgres {
				q = strings.Replace(q, "?", "$1", 1)
			}
			if err := s.DB.QueryRowContext(ctx, q, r.path).Scan(&stored); err != nil {
				t.Fatalf("%s: %v", r.path, err)
			}
			if stored != r.wantFold {
				t.Errorf("%s %q: fold stored %v, want %v", r.path, r.text, stored, r.wantFold)
			}
		}
	})
}
