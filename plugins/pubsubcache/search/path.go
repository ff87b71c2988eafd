package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a path.
const (
	maxPathLen   = 1024
	maxPathDepth = 32
	maxIndex     = 1 << 20
)

// Step is one step of a Path: an object key, or an array index when
// IsIndex is set.
type Step struct {
	Key     string
	Index   int
	IsIndex bool
}

// Path is a parsed path into a parsed JSON value: a non-empty list of keys
// and array indexes.
type Path []Step

// ParsePath parses the path syntax of DESIGN §9: dotted keys with [n]
// indexes (author.name, tags, links[0].href); a key holding '.', '[', '"'
// or spaces is written ["key"] in JSON string syntax (["a.b"], x["y z"]).
// A bare key is any run of characters other than '.', '[', ']', '"' and
// white space.
func ParsePath(s string) (Path, error) {
	if s == "" {
		return nil, errors.New("empty path")
	}
	if len(s) > maxPathLen {
		return nil, fmt.Errorf("path longer than %d bytes", maxPathLen)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("path %q is not valid UTF-8", s)
	}
	var p Path
	i := 0
	first := true
	for i < len(s) {
		if len(p) >= maxPathDepth {
			return nil, fmt.Errorf("path %q deeper than %d steps", s, maxPathDepth)
		}
		switch {
		case s[i] == '[':
			step, n, err := parseBracket(s[i:])
			if err != nil {
				return nil, fmt.Errorf("path %q at offset %d: %w", s, i, err)
			}
			p = append(p, step)
			i += n
		case s[i] == '.' && !first:
			i++
			j := i
			for j < len(s) && !isDelim(s[j]) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("path %q at offset %d: empty key after '.'", s, i)
			}
			p = append(p, Step{Key: s[i:j]})
			i = j
		case first && !isDelim(s[i]):
			j := i
			for j < len(s) && !isDelim(s[j]) {
				j++
			}
			p = append(p, Step{Key: s[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("path %q at offset %d: unexpected %q (quote odd keys as [\"key\"])", s, i, s[i])
		}
		first = false
	}
	return p, nil
}

func isDelim(c byte) bool {
	switch c {
	case '.', '[', ']', '"', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// parseBracket parses [n] or ["key"] at the start of s.
func parseBracket(s string) (Step, int, error) {
	if len(s) > 1 && s[1] == '"' {
		// A JSON string, then ']'.
		dec := json.NewDecoder(strings.NewReader(s[1:]))
		var key string
		if err := dec.Decode(&key); err != nil {
			return Step{}, 0, fmt.Errorf("bad quoted key: %v", err)
		}
		n := 1 + int(dec.InputOffset())
		if n >= len(s) || s[n] != ']' {
			return Step{}, 0, errors.New(`missing ']' after quoted key`)
		}
		return Step{Key: key}, n + 1, nil
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return Step{}, 0, errors.New("missing ']'")
	}
	digits := s[1:end]
	if digits == "" || (len(digits) > 1 && digits[0] == '0') || strings.TrimLeft(digits, "0123456789") != "" {
		return Step{}, 0, fmt.Errorf("bad index [%s] (want a non-negative integer or a quoted key)", digits)
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > maxIndex {
		return Step{}, 0, fmt.Errorf("index [%s] too large", digits)
	}
	return Step{Index: n, IsIndex: true}, end + 1, nil
}

// String returns the canonical form of p: bare keys where the syntax
// allows, ["key"] otherwise, [n] for indexes. ParsePath(p.String())
// equals p.
func (p Path) String() string {
	var b strings.Builder
	for i, st := range p {
		switch {
		case st.IsIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(st.Index))
			b.WriteByte(']')
		case bareKey(st.Key):
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(st.Key)
		default:
			b.WriteByte('[')
			b.WriteString(quoteJSON(st.Key))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func bareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if isDelim(k[i]) {
			return false
		}
	}
	return true
}

func quoteJSON(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// sqlitePath returns p as an SQLite JSON path ($."a"[0]). Keys holding '"'
// cannot be written in SQLite's path syntax.
func (p Path) sqlitePath() (string, error) {
	var b strings.Builder
	b.WriteByte('$')
	for _, st := range p {
		if st.IsIndex {
			fmt.Fprintf(&b, "[%d]", st.Index)
			continue
		}
		if strings.ContainsAny(st.Key, "\"\\") {
			return "", fmt.Errorf("path %s: a key holding '\"' or '\\' can only be searched when the path is indexed", p)
		}
		b.WriteString(`."`)
		b.WriteString(st.Key)
		b.WriteByte('"')
	}
	return b.String(), nil
}

// pgPath returns p as a strict PostgreSQL jsonpath (strict $."a"[0]).
func (p Path) pgPath() (string, error) {
	var b strings.Builder
	b.WriteString("strict $")
	for _, st := range p {
		if st.IsIndex {
			fmt.Fprintf(&b, "[%d]", st.Index)
			continue
		}
		if strings.ContainsAny(st.Key, "\"\\") {
			return "", fmt.Errorf("path %s: a key holding '\"' or '\\' can only be searched when the path is indexed", p)
		}
		b.WriteByte('.')
		b.WriteString(quoteJSON(st.Key))
	}
	return b.String(), nil
}

// lookup returns the value at p in v (decoded JSON), and whether it exists.
func (p Path) lookup(v any) (any, bool) {
	for _, st := range p {
		if st.IsIndex {
			a, ok := v.([]any)
			if !ok || st.Index >= len(a) {
				return nil, false
			}
			v = a[st.Index]
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[st.Key]; !ok {
			return nil, false
		}
	}
	return v, true
}
