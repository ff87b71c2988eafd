package storage

import (
	"strings"
	"unicode"

	entsql "entgo.io/ent/dialect/sql"

	"example.org/backend/ent/predicate"
	"example.org/backend/ent/pubsubitem"
)

// SearchTerms splits a user's full-text query into the terms both engines
// index the same way: runs of letters and digits.
func SearchTerms(query string) []string {
	return strings.FieldsFunc(query, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsMark(r)
	})
}

// MatchText returns a predicate on items whose search_text contains every
// term of query (case- and diacritic-insensitive), using the dialect's
// full-text index: the FTS5 table pubsub_items_fts on SQLite, the
// pubsub_items_search tsvector table on PostgreSQL. A query without terms
// matches nothing.
func (s *Store) MatchText(query string) predicate.PubsubItem {
	terms := SearchTerms(query)
	return func(sel *entsql.Selector) {
		if len(terms) == 0 {
			sel.Where(entsql.False())
			return
		}
		id := sel.C(pubsubitem.FieldID)
		sel.Where(entsql.P(func(b *entsql.Builder) {
			b.WriteString(id)
			if s.Dialect == DriverPostgres {
				b.WriteString(` IN (SELECT "item_id" FROM "pubsub_items_search" WHERE "tsv" @@ plainto_tsquery('simple', unaccent(`)
				b.Arg(strings.Join(terms, " "))
				b.WriteString(`)))`)
				return
			}
			// Each term as an FTS5 string: no operator or column syntax
			// from the user reaches MATCH; juxtaposed strings are ANDed.
			quoted := make([]string, len(terms))
			for i, t := range terms {
				quoted[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
			}
			b.WriteString(" IN (SELECT rowid FROM pubsub_items_fts WHERE pubsub_items_fts MATCH ")
			b.Arg(strings.Join(quoted, " "))
			b.WriteString(")")
		}))
	}
}
