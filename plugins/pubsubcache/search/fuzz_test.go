package search

import (
	"strings"
	"testing"
	"unicode/utf8"

	"example.org/backend/core/storage"
)

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"tags", "author.name", "links[0].href", `["odd.key"]`, `a["b\"c"][12]`, "a..b", "[", `["`, "[01]", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		if len(p) == 0 {
			t.Fatalf("ParsePath(%q) accepted an empty path", s)
		}
		// The canonical form parses back to the same path.
		q, err := ParsePath(p.String())
		if err != nil || q.String() != p.String() || len(q) != len(p) {
			t.Fatalf("round trip of %q: %q -> %v, %v", s, p.String(), q, err)
		}
		// Engine paths never let a quote through unescaped.
		if sp, err := p.sqlitePath(); err == nil && strings.Count(sp, `"`)%2 != 0 {
			t.Fatalf("sqlite path %q", sp)
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range filterCases {
		f.Add(s)
	}
	f.Add(`a  ==   spaced value  `)
	f.Add(`x like \`)
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		if !flt.Op.valid() || flt.validate() != nil {
			t.Fatalf("ParseFilter(%q) returned an invalid filter %v", s, flt)
		}
		// Building SQL never fails on a valid filter but for the
		// documented unindexed-key restriction, and binds every value.
		for _, d := range []string{storage.DriverSQLite, storage.DriverPostgres} {
			for _, indexed := range []bool{true, false} {
				b := &builder{pg: d == storage.DriverPostgres}
				err := b.filter(flt, indexed)
				if err != nil {
					if !indexed && strings.Contains(err.Error(), "only be searched when the path is indexed") {
						continue
					}
					if _, perr := parsePattern(stringValue(flt.Value)); perr != nil {
						continue
					}
					t.Fatalf("%s indexed=%v: %q: %v", d, indexed, s, err)
				}
				// A string value never shows in the SQL text (unless the
				// text holds it whatever the value, e.g. "WHEN").
				if sv, ok := flt.Value.(string); ok && len(sv) > 3 && strings.Contains(b.sb.String(), sv) {
					base := &builder{pg: b.pg}
					_ = base.filter(Filter{Path: flt.Path, Op: flt.Op, Value: "\x01"}, indexed)
					if !strings.Contains(base.sb.String(), sv) {
						t.Fatalf("value %q spliced into SQL: %s", sv, b.sb.String())
					}
				}
			}
		}
	})
}

func stringValue(v any) string {
	s, _ := v.(string)
	return s
}

func FuzzParseFTS(f *testing.F) {
	for _, s := range []string{`café "quick brown" tea OR coffee -fox -"lazy dog"`, `a OR`, `"x`, `-a`, `node:xyz-1`, `""`, `a OR b OR c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseFTS(s)
		if err != nil {
			return
		}
		if len(q.Clauses) == 0 {
			t.Fatalf("ParseFTS(%q): no clause", s)
		}
		for _, c := range q.Clauses {
			for _, a := range c {
				for _, term := range a {
					if term == "" || !utf8.ValidString(term) || strings.ContainsAny(term, "\" *():^-+") {
						t.Fatalf("ParseFTS(%q): bad term %q", s, term)
					}
				}
			}
		}
		_ = q.fts5()
		b := &builder{pg: true}
		q.tsquery(b)
		if strings.Contains(b.sb.String(), "'") && !strings.HasPrefix(b.sb.String(), "(") {
			t.Fatalf("tsquery %s", b.sb.String())
		}
	})
}
