package search

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
)

// fixtureItem is one cached item of the fixture.
type fixtureItem struct {
	node    int // index into fixtureNodes
	id      string
	parsed  string // JSON, "" for unparsed
	text    string // search_text
	created time.Time
}

var fixtureNodes = []struct {
	profile, service, node, typ, subtype string
}{
	{"alice", "pubsub.example", "urn:xmpp:microblog:0", "blog", ""},
	{"alice", "pubsub.example", "urn:xmpp:microblog:0:comments/1", "blog", "comment"},
	{"bob", "bob@example", "urn:xmpp:microblog:0", "blog", ""},
	{"bob", "bob@example", "other", "", ""},
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var fixture = []fixtureItem{
	{0, "a", `{"tags":["one","Two"],"published":"2026-01-01T10:00:00Z","author":{"name":"Élodie"},"n":5,"flag":true,"title":"Café crème"}`, "Café crème brûlée one", t0.Add(5 * time.Hour)},
	{0, "B", `{"tags":"one","published":"2026-01-02T10:00:00Z","author":{"name":"bob"},"n":5.5,"flag":false}`, "coffee time", t0.Add(1 * time.Hour)},
	{1, "é", `{"tags":[],"author":{"name":null},"n":"5"}`, "plain tea", t0.Add(3 * time.Hour)},
	{1, "Z", `{"tags":["ÉTÉ","x y"],"author":{"name":"ÉLODIE"},"n":-1,"odd.key":"dot"}`, "summer ÉTÉ cafe", t0.Add(2 * time.Hour)},
	{2, "10", `{"tags":[["nested"],{"o":1},null,1,true],"n":null}`, "nested things", t0.Add(4 * time.Hour)},
	{2, "9", ``, "unparsed item", t0.Add(6 * time.Hour)},
	{2, "c", `{"author":"string not object","n":[1,2]}`, "the quick brown fox", t0.Add(7 * time.Hour)},
	{3, "d", `{"tags":["a%b","a_b","*?["],"title":"100% sure","n":1000}`, "quick sure", t0.Add(8 * time.Hour)},
	{3, "e", `{"n":{"a":1},"tags":["ſ","K"]}`, "fox jumps", t0.Add(9 * time.Hour)},
	{3, "f", `{"links":[{"href":"http://a"},{"href":"http://b"}],"n":0}`, "brown dog", t0.Add(10 * time.Hour)},
	{0, "g", `{"tags":["σ"],"author":{"name":"Σ"},"flag":true}`, "greek", t0.Add(11 * time.Hour)},
	{0, "h", `{"published":"2026-01-01T23:59:59Z","tags":["one"],"author":{"name":"bob"},"title":"Crème"}`, "one more", t0.Add(12 * time.Hour)},
}

var fixturePaths = []string{"tags", "n", "author.name", "published", "flag", `["odd.key"]`, "links[0].href", "title", "author"}

// loadFixture stores the fixture items and indexes them for fixturePaths.
func loadFixture(t testing.TB, s *storage.Store) {
	t.Helper()
	ctx := context.Background()
	c := s.Client
	profiles := map[string]*ent.Profile{}
	nodes := make([]*ent.PubsubNode, len(fixtureNodes))
	for k, n := range fixtureNodes {
		p := profiles[n.profile]
		if p == nil {
			p = c.Profile.Create().SetName(n.profile).SaveX(ctx)
			profiles[n.profile] = p
		}
		cr := c.PubsubNode.Create().SetProfile(p).SetService(n.service).SetName(n.node)
		if n.typ != "" {
			cr.SetType(n.typ)
		}
		if n.subtype != "" {
			cr.SetSubtype(n.subtype)
		}
		nodes[k] = cr.SaveX(ctx)
	}
	err := s.WithTx(ctx, func(tx *ent.Tx) error {
		for _, it := range fixture {
			payload := []byte("<entry xmlns='http://www.w3.org/2005/Atom'><title>" + it.id + "</title></entry>")
			var m map[string]any
			if it.parsed != "" {
				if err := json.Unmarshal([]byte(it.parsed), &m); err != nil {
					return err
				}
				// The payload holds the document's text: stored packed on SQLite.
				payload = payloadWith(it.id, m)
			}
			cr := tx.PubsubItem.Create().SetNode(nodes[it.node]).SetItemID(it.id).
				SetPayload(payload).
				SetPublisher("pub@example").SetSearchText(it.text).SetCreatedAt(it.created).SetUpdatedAt(t0.Add(-it.created.Sub(t0)))
			if m != nil {
				cr.SetParsed(parsedColumn(s, m, payload)).SetParseState("ok")
			}
			row, err := cr.Save(ctx)
			if err != nil {
				return err
			}
			if err := IndexItem(ctx, tx.Client(), row.ID, json.RawMessage(it.parsed), fixturePaths); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("load fixture: %v", err)
	}
}

// refMatch is the reference semantics of a filter, in Go: an item without
// parsed data never matches.
func refMatch(parsed string, f Filter) bool {
	if parsed == "" {
		return false
	}
	op, negated := f.Op.positive()
	var doc any
	if parsed != "" {
		_ = json.Unmarshal([]byte(parsed), &doc)
	}
	v, ok := f.Path.lookup(doc)
	present := ok && v != nil
	res := false
	if present {
		res = refPositive(v, op, f.Value)
	}
	return res != negated
}

func refPositive(v any, op Op, want any) bool {
	eqScalar := func(a, b any, fold bool) bool {
		if fold {
			as, ok1 := a.(string)
			bs, ok2 := b.(string)
			if ok1 && ok2 {
				return Fold(as) == Fold(bs)
			}
		}
		if !isScalar(a) || !isScalar(b) {
			return false
		}
		return a == b
	}
	cmp := func(a, b any) (int, bool) {
		switch x := a.(type) {
		case float64:
			y, ok := b.(float64)
			if !ok {
				return 0, false
			}
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		case string:
			y, ok := b.(string)
			if !ok {
				return 0, false
			}
			return strings.Compare(x, y), true
		}
		return 0, false
	}
	switch op {
	case OpEq:
		if isScalar(want) {
			return eqScalar(v, want, false)
		}
		_, va := v.([]any)
		_, vo := v.(map[string]any)
		_, wa := want.([]any)
		_, wo := want.(map[string]any)
		return (va && wa || vo && wo) && canonicalJSON(v) == canonicalJSON(want)
	case OpLt, OpLe, OpGt, OpGe:
		c, ok := cmp(v, want)
		if !ok {
			return false
		}
		return map[Op]bool{OpLt: c < 0, OpLe: c <= 0, OpGt: c > 0, OpGe: c >= 0}[op]
	case OpBetween:
		a := want.([]any)
		c1, ok1 := cmp(v, a[0])
		c2, ok2 := cmp(v, a[1])
		return ok1 && ok2 && c1 >= 0 && c2 <= 0
	case OpIn:
		for _, w := range asList(want) {
			if eqScalar(v, w, false) {
				return true
			}
		}
		return false
	case OpLike, OpILike:
		s, ok := v.(string)
		if !ok {
			return false
		}
		p, _ := parsePattern(want.(string))
		if op == OpILike {
			return p.fold().match(Fold(s))
		}
		return p.match(s)
	case OpOverlap, OpIOverlap:
		var members []any
		switch x := v.(type) {
		case []any:
			members = x
		case map[string]any:
		default:
			members = []any{x}
		}
		for _, m := range members {
			if m == nil {
				continue
			}
			for _, w := range asList(want) {
				if eqScalar(m, w, op == OpIOverlap) {
					return true
				}
			}
		}
		return false
	}
	panic(op)
}

// filterCases are -F arguments covering every operator with edge values.
var filterCases = []string{
	`tags == "one"`, `tags == ["one","Two"]`, `tags == []`, `n == 5`, `n == 5.0`, `n == "5"`, `flag == true`, `flag == false`,
	`author == {"name":"bob"}`, `author == "string not object"`, `author.name == Élodie`, `author.name == élodie`,
	`["odd.key"] == dot`, `links[0].href == http://a`, `links[1].href == http://b`,
	`tags != "one"`, `n != 5`, `author.name != bob`, `flag != true`,
	`n < 5`, `n <= 5`, `n > 5`, `n >= 5`, `n < 0`, `n >= -1`, `n > "4"`, `n < "6"`,
	`published < 2026-01-02T10:00:00Z`, `published <= 2026-01-02T10:00:00Z`, `published > 2026-01-01T10:00:00Z`, `published >= 2026-01-01`,
	`author.name < a`, `author.name > Z`, `author.name >= É`,
	`n between [0, 5]`, `n between [5, 0]`, `n between ["0", "9"]`, `published between ["2026-01-01T00:00:00Z", "2026-01-01T23:59:59Z"]`,
	`n in [5, -1, "5"]`, `author.name in ["bob", "Σ"]`, `flag in [true]`, `tags in ["one"]`, `n in 0`,
	`n not_in [5, -1]`, `author.name not_in ["bob"]`, `tags not_in ["one"]`,
	`title like Caf%`, `title like %crème`, `title like Cr_me`, `title like 100\% sure`, `title like caf%`, `author.name like É%`, `author.name like %`,
	`title ilike caf%`, `title ilike CAFÉ CRÈME`, `author.name ilike élodie`, `author.name ilike σ`, `author.name ilike _`,
	`title not_like Caf%`, `title not_ilike caf%`, `author.name not_ilike élodie`,
	`tags overlap ["one"]`, `tags overlap one`, `tags overlap ["ÉTÉ", "a_b"]`, `tags overlap [1, true]`, `tags overlap ["nested"]`, `tags overlap "*?["`,
	`tags ioverlap ["été"]`, `tags ioverlap ["S", "k"]`, `tags ioverlap ["s"]`, `tags ioverlap ["K"]`, `tags ilike S`, `tags ioverlap ["ς"]`, `tags ioverlap ["TWO"]`, `n overlap [1]`, `n overlap 5`,
	`tags disjoint ["one"]`, `tags idisjoint ["two", "x Y"]`, `author.name disjoint ["bob"]`,
	// Case-insensitive operators on strings that are their own fold
	// ("bob", "one": no value_fold stored) and on strings that are not
	// ("Élodie", "ÉLODIE", "Crème", "Two", "ſ", "Σ"), with mixed needles.
	`author.name ilike bob`, `author.name ilike BOB`, `author.name ilike b%`, `author.name ilike %O%`, `author.name ilike ÉLO%`,
	`author.name ilike élo_ie`, `author.name ilike %`, `author.name ioverlap ["Bob", "élodie"]`, `author.name ioverlap ["σ"]`,
	`author.name not_ilike bob`, `author.name idisjoint ["ÉLODIE"]`, `title ilike crème`, `title ilike %RÈME`, `title ilike c%`,
	`tags ioverlap ["ONE"]`, `tags ioverlap ["one", "two"]`, `tags ioverlap ["Σ", 1, true]`, `tags ilike t%`, `tags ilike %`,
	`tags idisjoint ["one"]`, `tags ilike ſ`, `tags ioverlap ["ſ"]`, `tags ioverlap [1]`, `tags ilike S%`,
}

// TestFoldIdempotent checks, for every rune, what the indexed
// case-insensitive filters rely on (builder.indexedCond): Fold maps a rune
// to one rune, and folding twice is folding once.
func TestFoldIdempotent(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue // surrogates: not in valid UTF-8
		}
		s := string(r)
		f := Fold(s)
		if utf8.RuneCountInString(f) != 1 || Fold(f) != f {
			t.Errorf("Fold(%U) = %q, Fold of that = %q", r, f, Fold(f))
		}
	}
}

// TestFoldStoredOnlyWhenDifferent checks that the side table keeps a
// string's fold only when it differs from the string.
func TestFoldStoredOnlyWhenDifferent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		loadFixture(t, s)
		vals := s.Client.PubsubItemValue.Query().AllX(ctx)
		differ := 0
		for _, v := range vals {
			// Ent scans a NULL into a pointer to a nil slice; no fold
			// is empty (the empty string is its own fold).
			var fold []byte
			if v.ValueFold != nil {
				fold = *v.ValueFold
			}
			text := string(*v.ValueText)
			switch {
			case v.Kind != "s" && fold != nil:
				t.Errorf("%s: fold %q on kind %s", v.Path, fold, v.Kind)
			case v.Kind == "s" && Fold(text) == text && fold != nil:
				t.Errorf("%s %q: fold stored though equal to the text", v.Path, text)
			case v.Kind == "s" && Fold(text) != text:
				if string(fold) != Fold(text) {
					t.Errorf("%s %q: fold %q, want %q", v.Path, text, fold, Fold(text))
				}
				differ++
			}
		}
		var stored int
		if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM pubsub_item_values WHERE value_fold IS NOT NULL`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != differ {
			t.Errorf("%d non-NULL value_fold, want %d", stored, differ)
		}
		if differ == 0 || differ == len(vals) {
			t.Errorf("%d of %d values with a fold: the fixture should have both", differ, len(vals))
		}
	})
}

func ids(rows []Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ItemID
	}
	return out
}

func sortedIDs(rows []Row) []string {
	out := ids(rows)
	sort.Strings(out)
	return out
}

// searchers returns a Searcher using the side table for fixturePaths and
// one using the JSON functions only.
func searchers(s *storage.Store) map[string]*Searcher {
	return map[string]*Searcher{
		"indexed":   New(s, func() []string { return fixturePaths }),
		"unindexed": New(s, nil),
	}
}

// TestFiltersMatchReference runs every filter case on both engines, with
// and without the side table, and compares the result set with the Go
// reference semantics (so both engines return the same sets).
func TestFiltersMatchReference(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		loadFixture(t, s)
		ctx := context.Background()
		for name, sr := range searchers(s) {
			for _, fc := range filterCases {
				f, err := ParseFilter(fc)
				if err != nil {
					t.Fatalf("ParseFilter(%q): %v", fc, err)
				}
				var want []string
				for _, it := range fixture {
					if refMatch(it.parsed, f) {
						want = append(want, it.id)
					}
				}
				sort.Strings(want)
				rows, err := sr.rows(ctx, Query{Filters: []Filter{f}})
				if err != nil {
					t.Errorf("%s: %q: %v", name, fc, err)
					continue
				}
				if got := sortedIDs(rows); !slices.Equal(got, want) {
					t.Errorf("%s: %q = %q, want %q", name, fc, got, want)
				}
			}
		}
	})
}

func TestNodeFiltersOrderAndPaging(t *testing.T) {
	type tc struct {
		name   string
		q      Query
		want   []string
		sorted bool // compare as sets
	}
	var desc = func(k string) Order { o, _ := ParseOrder(k + ":desc"); return o }
	var asc = func(k string) Order { o, _ := ParseOrder(k); return o }
	tests := []tc{
		{name: "default order is creation", q: Query{}, want: []string{"B", "Z", "é", "10", "a", "9", "c", "d", "e", "f", "g", "h"}},
		{name: "profiles", q: Query{Profiles: []string{"bob"}}, want: []string{"10", "9", "c", "d", "e", "f"}},
		{name: "services and nodes", q: Query{Services: []string{"pubsub.example"}, Nodes: []string{"urn:xmpp:microblog:0"}}, want: []string{"B", "a", "g", "h"}},
		{name: "types", q: Query{Types: []string{"blog"}}, want: []string{"B", "Z", "é", "10", "a", "9", "c", "g", "h"}},
		{name: "no type", q: Query{Types: []string{""}}, want: []string{"d", "e", "f"}},
		{name: "subtypes", q: Query{Subtypes: []string{"comment"}}, want: []string{"Z", "é"}},
		{name: "item ids", q: Query{ItemIDs: []string{"a", "é", "zz"}}, want: []string{"é", "a"}},
		{name: "creation desc", q: Query{OrderBy: []Order{desc("creation")}, Limit: 3}, want: []string{"h", "g", "f"}},
		{name: "modification", q: Query{OrderBy: []Order{asc("modification")}, Limit: 3}, want: []string{"h", "g", "f"}},
		{name: "item_id bytes", q: Query{OrderBy: []Order{asc("item_id")}}, want: []string{"10", "9", "B", "Z", "a", "c", "d", "e", "f", "g", "h", "é"}},
		{name: "item_id desc paged", q: Query{OrderBy: []Order{desc("item_id")}, Offset: 1, Limit: 2}, want: []string{"h", "g"}},
		{name: "offset only", q: Query{Offset: 10}, want: []string{"g", "h"}},
		// Ties (here: missing values) keep the insertion order.
		{name: "path string asc, missing last", q: Query{OrderBy: []Order{asc("published")}}, want: []string{"a", "h", "B", "é", "Z", "10", "9", "c", "d", "e", "f", "g"}},
		{name: "path string desc, missing last", q: Query{OrderBy: []Order{desc("published")}, Limit: 4}, want: []string{"B", "h", "a", "é"}},
		{name: "path mixed kinds", q: Query{OrderBy: []Order{asc("n")}}, want: []string{"Z", "f", "a", "B", "d", "é", "c", "e", "10", "9", "g", "h"}},
		{name: "path mixed kinds desc", q: Query{OrderBy: []Order{desc("n")}}, want: []string{"e", "c", "é", "d", "B", "a", "f", "Z", "10", "9", "g", "h"}},
		{name: "filter ordered by path", q: Query{Filters: []Filter{mustFilter(`tags overlap one`), mustFilter(`flag != true`)}, OrderBy: []Order{desc("published")}}, want: []string{"B", "h"}},
		{name: "filter ordered by path, paged", q: Query{Filters: []Filter{mustFilter(`tags ioverlap ["ONE", "two"]`)}, OrderBy: []Order{desc("published")}, Offset: 1, Limit: 1}, want: []string{"h"}},
		{name: "bool path", q: Query{OrderBy: []Order{desc("flag")}, Limit: 3}, want: []string{"a", "g", "B"}},
		{name: "fts", q: Query{FTS: "cafe"}, want: []string{"Z", "a"}, sorted: true},
		{name: "fts phrase", q: Query{FTS: `"quick brown"`}, want: []string{"c"}, sorted: true},
		{name: "fts or", q: Query{FTS: `tea OR coffee`}, want: []string{"B", "é"}, sorted: true},
		{name: "fts excluded", q: Query{FTS: `quick -fox`}, want: []string{"d"}, sorted: true},
		{name: "fts excluded phrase", q: Query{FTS: `brown -"quick brown"`}, want: []string{"f"}, sorted: true},
		{name: "fts and", q: Query{FTS: `one CRÈME`}, want: []string{"a"}, sorted: true},
		{name: "fts hyphenated word", q: Query{FTS: `brown-dog`}, want: []string{"f"}, sorted: true},
		{name: "fts with filter and rank", q: Query{FTS: "one", Filters: []Filter{mustFilter(`tags overlap one`)}, OrderBy: []Order{asc("rank")}}, want: []string{"a", "h"}, sorted: true},
	}
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		loadFixture(t, s)
		ctx := context.Background()
		for name, sr := range searchers(s) {
			for _, tt := range tests {
				rows, err := sr.rows(ctx, tt.q)
				if err != nil {
					t.Errorf("%s: %s: %v", name, tt.name, err)
					continue
				}
				got := ids(rows)
				if tt.sorted {
					got = sortedIDs(rows)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s: %s = %q, want %q", name, tt.name, got, tt.want)
				}
			}
			// Two keys: author.name (strings by bytes: "ÉL" < "Él" < "Σ"; missing
			// last), then creation descending.
			rows, err := sr.rows(ctx, Query{OrderBy: []Order{asc("author.name"), desc("creation")}})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ids(rows), []string{"h", "B", "Z", "a", "g", "f", "e", "d", "c", "9", "10", "é"}; !slices.Equal(got, want) {
				t.Errorf("%s: order by author.name, creation desc = %q, want %q", name, got, want)
			}
		}
	})
}

func mustFilter(s string) Filter {
	f, err := ParseFilter(s)
	if err != nil {
		panic(err)
	}
	return f
}

func TestRowsAndPayload(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		loadFixture(t, s)
		rows, err := New(s, nil).rows(context.Background(), Query{ItemIDs: []string{"a", "9"}, WithPayload: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("rows = %+v", rows)
		}
		a, unparsed := rows[0], rows[1]
		if a.Profile != "alice" || a.Service != "pubsub.example" || a.Node != "urn:xmpp:microblog:0" || a.Publisher != "pub@example" ||
			!bytes.Contains(a.Payload, []byte("<title>a</title>")) {
			t.Errorf("row a = %+v", a)
		}
		var m map[string]any
		if err := json.Unmarshal(a.Parsed, &m); err != nil || m["published"] != "2026-01-01T10:00:00Z" || bytes.Contains(a.Parsed, []byte(": ")) {
			t.Errorf("parsed = %s (%v)", a.Parsed, err)
		}
		if unparsed.Parsed != nil {
			t.Errorf("unparsed item has parsed %s", unparsed.Parsed)
		}
		rows, _ = New(s, nil).rows(context.Background(), Query{ItemIDs: []string{"a"}})
		if rows[0].Payload != nil || rows[0].Publisher != "" {
			t.Errorf("payload without WithPayload: %+v", rows[0])
		}
	})
}

// TestIndexFollowsItems checks that IndexItem replaces an item's values,
// that values go with their item, and that Reindex rebuilds them.
func TestIndexFollowsItems(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		loadFixture(t, s)
		count := func() int { return s.Client.PubsubItemValue.Query().CountX(ctx) }
		before := count()
		if before == 0 {
			t.Fatal("no values indexed")
		}
		sr := New(s, func() []string { return fixturePaths })
		item := s.Client.PubsubItem.Query().FirstIDX(ctx)
		err := s.WithTx(ctx, func(tx *ent.Tx) error {
			return IndexItem(ctx, tx.Client(), item, json.RawMessage(`{"tags":["brand new"]}`), fixturePaths)
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := sr.rows(ctx, Query{Filters: []Filter{mustFilter(`tags overlap brand new`)}})
		if err != nil || len(rows) != 1 {
			t.Fatalf("after IndexItem: %v %v", ids(rows), err)
		}
		s.Client.PubsubItem.DeleteOneID(item).ExecX(ctx)
		if rows, _ := sr.rows(ctx, Query{Filters: []Filter{mustFilter(`tags overlap brand new`)}}); len(rows) != 0 {
			t.Errorf("deleted item still found: %v", ids(rows))
		}
		s.Client.PubsubItemValue.Delete().ExecX(ctx)
		if err := Reindex(ctx, fixturePaths, 3, func(ctx context.Context, fn func(c *ent.Client) error) error {
			return s.WithTx(ctx, func(tx *ent.Tx) error { return fn(tx.Client()) })
		}); err != nil {
			t.Fatal(err)
		}
		if got := count(); got >= before || got == 0 {
			t.Errorf("after reindex: %d values (before deleting one item: %d)", got, before)
		}
		rows, err = sr.rows(ctx, Query{Filters: []Filter{mustFilter(`tags overlap one`)}})
		if err != nil || len(rows) == 0 {
			t.Errorf("after reindex: %v %v", ids(rows), err)
		}
	})
}

func TestMalformedQueries(t *testing.T) {
	bad := []struct{ filter, want string }{
		{`tags`, "want 'PATH OP VALUE'"},
		{`tags ==`, "missing VALUE"},
		{`tags === x`, `unknown operator "==="`},
		{`a..b == 1`, "empty key"},
		{`a[x] == 1`, "bad index"},
		{`a["x" == 1`, "missing ']'"},
		{`"a" == 1`, "unexpected"},
		{`n < true`, "needs a number or a string"},
		{`n between [1]`, "between needs"},
		{`n between [1, "2"]`, "between needs"},
		{`n in []`, "non-empty list"},
		{`n in [[1]]`, "takes strings, numbers and booleans"},
		{`n like 5`, "needs a string pattern"},
		{`n == null`, "null never matches"},
	}
	for _, b := range bad {
		_, err := ParseFilter(b.filter)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParseFilter(%q) = %v, want an error containing %q", b.filter, err, b.want)
		}
	}
	badFTS := []struct{ q, want string }{
		{`"open`, "unterminated phrase"},
		{`OR a`, "OR needs"},
		{`a OR`, "OR needs"},
		{`a OR OR b`, "OR OR"},
		{`a OR -b`, "excluded"},
		{`-a`, "at least one word"},
		{`a --`, `"--" holds no letters`},
	}
	for _, b := range badFTS {
		_, err := ParseFTS(b.q)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParseFTS(%q) = %v, want an error containing %q", b.q, err, b.want)
		}
	}
	badOrder := []struct{ o, want string }{
		{"creation:up", "direction"},
		{"a..b", "empty key"},
	}
	for _, b := range badOrder {
		_, err := ParseOrder(b.o)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParseOrder(%q) = %v, want an error containing %q", b.o, err, b.want)
		}
	}
	// Query-level errors, before any SQL runs.
	s := &Searcher{store: &storage.Store{Dialect: storage.DriverSQLite}}
	rank, _ := ParseOrder("rank")
	for _, q := range []Query{
		{OrderBy: []Order{rank}},
		{FTS: `"x`},
		{Limit: -1},
		{Filters: []Filter{{Path: Path{{Key: `a"b`}}, Op: OpEq, Value: "x"}}},
	} {
		if _, _, _, err := s.Build(q); err == nil || !strings.Contains(err.Error(), "invalid search query") {
			t.Errorf("Build(%+v) = %v", q, err)
		}
	}
}

func TestParsePathRoundTrip(t *testing.T) {
	tests := []struct {
		in, canon string
		steps     int
	}{
		{"tags", "tags", 1},
		{"author.name", "author.name", 2},
		{"links[0].href", "links[0].href", 3},
		{`["odd.key"]`, `["odd.key"]`, 1},
		{`a["b c"][2]["x\"y"]`, `a["b c"][2]["x\"y"]`, 4},
		{`["rank"]`, "rank", 1},
		{`[""]`, `[""]`, 1},
		{`[0]`, `[0]`, 1},
		{`é.ü`, `é.ü`, 2},
	}
	for _, tt := range tests {
		p, err := ParsePath(tt.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tt.in, err)
			continue
		}
		if p.String() != tt.canon || len(p) != tt.steps {
			t.Errorf("ParsePath(%q) = %q (%d steps), want %q (%d)", tt.in, p, len(p), tt.canon, tt.steps)
		}
	}
	o, err := ParseOrder(`["rank"]:desc`)
	if err != nil || o.Keyword != "" || o.Path.String() != "rank" || !o.Desc || o.String() != `["rank"]:desc` {
		t.Errorf(`ParseOrder(["rank"]:desc) = %+v, %v`, o, err)
	}
	o, err = ParseOrder("a:b")
	if err != nil || o.Path.String() != "a:b" {
		t.Errorf("ParseOrder(a:b) = %+v, %v", o, err)
	}
}

func TestFTSRendering(t *testing.T) {
	f, err := ParseFTS(`café "quick brown" tea OR coffee -fox -"lazy dog" node:xyz-1`)
	if err != nil {
		t.Fatal(err)
	}
	want := `(("café") AND ("quick brown") AND ("tea" OR "coffee") AND ("node xyz 1")) NOT ("fox" OR "lazy dog")`
	if got := f.fts5(); got != want {
		t.Errorf("fts5 = %s\nwant   %s", got, want)
	}
	b := &builder{pg: true}
	f.tsquery(b)
	if strings.Contains(b.sb.String(), "café") || len(b.args) != 7 {
		t.Errorf("tsquery = %s %v", b.sb.String(), b.args)
	}
}

func TestPatternRendering(t *testing.T) {
	p, err := parsePattern(`a*b?[c%d_e\%f\\`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.glob(), `a[*]b[?][[]c*d?e%f\`; got != want {
		t.Errorf("glob = %q, want %q", got, want)
	}
	if got, want := p.like(), `a*b?[c%d_e\%f\\`; got != want {
		t.Errorf("like = %q, want %q", got, want)
	}
	if p.prefix() != "a*b?[c" || string(byteSuccessor("ab\xff")) != "ac" || byteSuccessor("\xff") != nil {
		t.Errorf("prefix %q", p.prefix())
	}
	if _, err := parsePattern(`a\`); err == nil {
		t.Error("lone backslash accepted")
	}
}

// rows runs a search and returns its rows only.
func (s *Searcher) rows(ctx context.Context, q Query) ([]Row, error) {
	res, err := s.Search(ctx, q)
	return res.Rows, err
}
