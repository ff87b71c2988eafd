package search

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// pattern is a parsed like pattern: % any sequence, _ one character,
// \ escapes the next character.
type pattern []patTok

type patTok struct {
	any  bool // %
	one  bool // _
	text string
}

func parsePattern(s string) (pattern, error) {
	var p pattern
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p = append(p, patTok{text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return nil, errors.New(`pattern ends with a lone '\' (write '\\' for a backslash)`)
			}
			i++
			lit.WriteByte(s[i])
		case '%':
			flush()
			if len(p) == 0 || !p[len(p)-1].any {
				p = append(p, patTok{any: true})
			}
		case '_':
			flush()
			p = append(p, patTok{one: true})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return p, nil
}

// fold returns the pattern with its literal text case-folded.
func (p pattern) fold() pattern {
	out := make(pattern, len(p))
	for i, t := range p {
		t.text = Fold(t.text)
		out[i] = t
	}
	return out
}

// prefix is the literal text the pattern starts with.
func (p pattern) prefix() string {
	if len(p) > 0 && !p[0].any && !p[0].one {
		return p[0].text
	}
	return ""
}

// glob renders the pattern for SQLite's GLOB (case-sensitive).
func (p pattern) glob() string {
	var b strings.Builder
	for _, t := range p {
		switch {
		case t.any:
			b.WriteByte('*')
		case t.one:
			b.WriteByte('?')
		default:
			for _, r := range t.text {
				switch r {
				case '*', '?', '[':
					b.WriteByte('[')
					b.WriteRune(r)
					b.WriteByte(']')
				default:
					b.WriteRune(r)
				}
			}
		}
	}
	return b.String()
}

// like renders the pattern for PostgreSQL's LIKE (escape '\').
func (p pattern) like() string {
	var b strings.Builder
	for _, t := range p {
		switch {
		case t.any:
			b.WriteByte('%')
		case t.one:
			b.WriteByte('_')
		default:
			for _, r := range t.text {
				if r == '%' || r == '_' || r == '\\' {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// match evaluates the pattern on s in Go (the reference semantics used by
// tests).
func (p pattern) match(s string) bool {
	if len(p) == 0 {
		return s == ""
	}
	t := p[0]
	switch {
	case t.any:
		for i := 0; ; {
			if p[1:].match(s[i:]) {
				return true
			}
			if i >= len(s) {
				return false
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
		}
	case t.one:
		if s == "" {
			return false
		}
		_, n := utf8.DecodeRuneInString(s)
		return p[1:].match(s[n:])
	default:
		return strings.HasPrefix(s, t.text) && p[1:].match(s[len(t.text):])
	}
}

// byteSuccessor returns the smallest byte string greater than every string
// starting with prefix, or nil when there is none (prefix all 0xFF).
func byteSuccessor(prefix string) []byte {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xFF {
			b[i]++
			return b[:i+1]
		}
	}
	return nil
}
