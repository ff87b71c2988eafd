package search

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"example.org/backend/core/storage"
)

// Limits of a full-text query.
const (
	maxFTSLen   = 4096
	maxFTSAtoms = 64
)

// FTS is a parsed full-text query: every clause must match (AND); a clause
// matches when one of its atoms does (OR); no excluded atom may match. An
// atom is a word or a phrase: its terms must appear next to each other, in
// order.
type FTS struct {
	Clauses  [][]Atom
	Excluded []Atom
}

// Atom is a word or a phrase, as its terms (runs of letters, digits and
// marks, the way both engines tokenize search_text).
type Atom []string

// ParseFTS parses the portable full-text syntax of DESIGN §9: words (all
// must match), "phrases", -excluded words or phrases, and OR between two
// words or phrases. Matching is case- and diacritic-insensitive. A word
// holding punctuation (e.g. xyz-1) is the phrase of its parts.
func ParseFTS(q string) (FTS, error) {
	var f FTS
	if len(q) > maxFTSLen {
		return f, fmt.Errorf("full-text query longer than %d bytes", maxFTSLen)
	}
	if !utf8.ValidString(q) {
		return f, errors.New("full-text query is not valid UTF-8")
	}
	type item struct {
		text     string
		exclude  bool
		or       bool
		original string
	}
	var items []item
	for i := 0; i < len(q); {
		c := q[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			i++
			continue
		}
		start := i
		exclude := false
		if c == '-' && i+1 < len(q) && q[i+1] != ' ' {
			exclude = true
			i++
		}
		if i < len(q) && q[i] == '"' {
			end := strings.IndexByte(q[i+1:], '"')
			if end < 0 {
				return f, fmt.Errorf("full-text query: unterminated phrase at offset %d", i)
			}
			items = append(items, item{text: q[i+1 : i+1+end], exclude: exclude, original: q[start : i+2+end]})
			i += end + 2
			continue
		}
		end := strings.IndexAny(q[i:], " \t\n\r")
		if end < 0 {
			end = len(q) - i
		}
		word := q[i : i+end]
		i += end
		if word == "OR" && !exclude {
			items = append(items, item{or: true, original: word})
			continue
		}
		items = append(items, item{text: word, exclude: exclude, original: q[start:i]})
	}
	if len(items) > maxFTSAtoms {
		return f, fmt.Errorf("full-text query has more than %d terms", maxFTSAtoms)
	}
	joinNext := false
	for k, it := range items {
		if it.or {
			switch {
			case k == 0 || k == len(items)-1:
				return f, errors.New("full-text query: OR needs a word or phrase on each side")
			case items[k-1].or || items[k+1].or:
				return f, errors.New("full-text query: OR OR")
			case items[k-1].exclude || items[k+1].exclude:
				return f, errors.New("full-text query: OR cannot join an excluded term")
			}
			joinNext = true
			continue
		}
		terms := storage.SearchTerms(it.text)
		if len(terms) == 0 {
			return f, fmt.Errorf("full-text query: %q holds no letters or digits", it.original)
		}
		a := Atom(terms)
		switch {
		case it.exclude:
			f.Excluded = append(f.Excluded, a)
		case joinNext:
			f.Clauses[len(f.Clauses)-1] = append(f.Clauses[len(f.Clauses)-1], a)
		default:
			f.Clauses = append(f.Clauses, []Atom{a})
		}
		joinNext = false
	}
	if len(f.Clauses) == 0 {
		return f, errors.New("full-text query: needs at least one word or phrase that is not excluded")
	}
	return f, nil
}

// fts5 renders the query in SQLite FTS5 syntax. Terms are letters and
// digits only, quoted as FTS5 strings: no user text reaches FTS5 syntax.
func (f FTS) fts5() string {
	atom := func(a Atom) string { return `"` + strings.Join(a, " ") + `"` }
	group := func(as []Atom) string {
		s := make([]string, len(as))
		for i, a := range as {
			s[i] = atom(a)
		}
		return "(" + strings.Join(s, " OR ") + ")"
	}
	parts := make([]string, len(f.Clauses))
	for i, c := range f.Clauses {
		parts[i] = group(c)
	}
	out := "(" + strings.Join(parts, " AND ") + ")"
	if len(f.Excluded) > 0 {
		out += " NOT " + group(f.Excluded)
	}
	return out
}

// tsquery writes the query as a PostgreSQL tsquery expression built from
// bound phrases: phraseto_tsquery('simple', unaccent($n)) combined with
// ||, && and !!.
func (f FTS) tsquery(b *builder) {
	atom := func(a Atom) {
		b.w("phraseto_tsquery('simple', unaccent(")
		b.arg(strings.Join(a, " "))
		b.w("))")
	}
	group := func(as []Atom) {
		b.w("(")
		for i, a := range as {
			if i > 0 {
				b.w(" || ")
			}
			atom(a)
		}
		b.w(")")
	}
	b.w("(")
	for i, c := range f.Clauses {
		if i > 0 {
			b.w(" && ")
		}
		group(c)
	}
	if len(f.Excluded) > 0 {
		b.w(" && !!")
		group(f.Excluded)
	}
	b.w(")")
}
