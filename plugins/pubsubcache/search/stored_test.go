package search

import (
	"context"
	"errors"
	"testing"

	"example.org/backend/core/storage"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
)

// TestStoredParsedForms: on SQLite the parsed column holds raw JSON (rows
// written before packing, documents too small to pack) or JSON packed
// with the payload; filters, expression indexes and rows read both. A
// damaged packed document (its bytes, or the payload it was packed with)
// matches no filter and is never served: reading the item fails with
// payloadcodec.ErrDamaged.
func TestStoredParsedForms(t *testing.T) {
	ctx := context.Background()
	s := openEngine(t, storage.DriverSQLite)
	loadFixture(t, s)
	var packed, raw int
	if err := s.DB.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE hex(substr(parsed, 1, 1)) = '00'), count(*) FILTER (WHERE hex(substr(parsed, 1, 1)) = '7B')
		FROM pubsub_items WHERE parsed IS NOT NULL`).Scan(&packed, &raw); err != nil {
		t.Fatal(err)
	}
	if packed == 0 {
		t.Fatalf("no packed document in the fixture (%d raw)", raw)
	}
	// One item of each form, written as raw JSON text as Ent did before.
	if _, err := s.DB.ExecContext(ctx, `UPDATE pubsub_items SET parsed = '{"title":"Raw row","n":77}' WHERE item_id = 'c'`); err != nil {
		t.Fatal(err)
	}
	sr := New(s, nil)
	ids := func(q Query) []string {
		t.Helper()
		rows, err := sr.rows(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, r.ItemID)
		}
		return out
	}
	if got := ids(Query{Filters: []Filter{mustFilter(`n == 77`)}}); len(got) != 1 || got[0] != "c" {
		t.Errorf("filter on a raw row: %v", got)
	}
	if got := ids(Query{Filters: []Filter{mustFilter(`title == "Café crème"`)}}); len(got) != 1 || got[0] != "a" {
		t.Errorf("filter on a packed row: %v", got)
	}
	var stored []byte
	if err := s.DB.QueryRowContext(ctx, `SELECT parsed FROM pubsub_items WHERE item_id = 'a'`).Scan(&stored); err != nil || len(stored) == 0 || stored[0] != 0 {
		t.Fatalf("item a: parsed %q (%v), want packed", stored, err)
	}
	flipped := append([]byte(nil), stored...)
	flipped[len(flipped)-2] ^= 0x01
	for name, stmt := range map[string]struct {
		sql string
		arg any
	}{
		"document damaged": {`UPDATE pubsub_items SET parsed = ? WHERE item_id = 'a'`, flipped},
		"payload changed":  {`UPDATE pubsub_items SET parsed = ?, payload = CAST('<entry xmlns=''http://www.w3.org/2005/Atom''><title>other</title></entry>' AS BLOB) WHERE item_id = 'a'`, stored},
	} {
		if _, err := s.DB.ExecContext(ctx, stmt.sql, stmt.arg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := ids(Query{Filters: []Filter{mustFilter(`title == "Café crème"`)}}); len(got) != 0 {
			t.Errorf("%s: a filter matches %v", name, got)
		}
		if _, err := sr.rows(ctx, Query{ItemIDs: []string{"a"}}); !errors.Is(err, payloadcodec.ErrDamaged) {
			t.Errorf("%s: reading the item: %v, want ErrDamaged", name, err)
		}
	}
}

// TestStaleAutoIndexesDropped: the expression indexes of the raw-JSON
// kind (written before packing) are dropped before the cache writes, and
// the current kind's are kept.
func TestStaleAutoIndexesDropped(t *testing.T) {
	ctx := context.Background()
	s := openEngine(t, storage.DriverSQLite)
	loadFixture(t, s)
	old := autoIndexPrefix + string(autoSQLiteRaw) + "_0123456789abcdef"
	if _, err := s.DB.ExecContext(ctx, `CREATE INDEX `+old+` ON pubsub_items (CASE json_type(parsed, '$.title') WHEN 'text' THEN substr(json_extract(parsed, '$.title'), 1, 64) END)`); err != nil {
		// Some SQLite versions refuse the old expression over packed rows already.
		t.Logf("old index over packed rows: %v", err)
		if _, err := s.DB.ExecContext(ctx, `CREATE INDEX `+old+` ON pubsub_items (CASE json_type(parsed, '$.title') WHEN 'text' THEN 1 END) WHERE parsed IS NULL`); err != nil {
			t.Fatal(err)
		}
	}
	k := autoKey{path: "title", kind: autoSQLite}
	expr, err := autoIndexExpr(k, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.ExecContext(ctx, `CREATE INDEX `+autoIndexName(k)+` ON pubsub_items (`+expr+`)`); err != nil {
		t.Fatal(err)
	}
	if err := DropStaleAutoIndexes(ctx, s); err != nil {
		t.Fatal(err)
	}
	var names []string
	rows, err := s.DB.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'pubsub_items_px_%'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	if len(names) != 1 || names[0] != autoIndexName(k) {
		t.Errorf("expression indexes after the drop: %v, want [%s]", names, autoIndexName(k))
	}
}
