package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"golang.org/x/term"
)

// Element names that hold a payload's title and date, in order of
// preference (Atom and XEP-0277 first, then common vocabularies).
var (
	titleNames = []string{"title", "subject", "name", "summary", "label", "description"}
	dateNames  = []string{"published", "updated", "date", "created", "modified", "dtstart", "start", "when"}
)

// summary is the one-line description of an item for tables.
type summary struct {
	Title string // a title-like field, else the payload's text
	Date  string // a date-like field, "" when none
}

// summarize reads the canonical item wrapper (<item …>PAYLOAD</item>) and
// returns the title and date of its payload: the first title-like and
// date-like children of the payload's root element (the fields the
// microblog parser reads from an Atom entry), else the payload's text,
// else the root element's name. It never fails: an undecodable payload is
// summarised by what could be read.
func summarize(wrapper string) summary {
	dec := xml.NewDecoder(strings.NewReader(wrapper))
	dec.Strict = false
	var (
		depth      int    // 1 = <item>, 2 = payload root, 3 = its children
		root       string // payload root's local name and namespace
		child      string // the depth-3 element being read
		childText  strings.Builder
		titles     = map[string]string{}
		dates      = map[string]string{}
		allText    strings.Builder
		textBudget = 4096
	)
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 2:
				root = t.Name.Local
				if t.Name.Space != "" {
					root += " (" + t.Name.Space + ")"
				}
			case 3:
				child = strings.ToLower(t.Name.Local)
				childText.Reset()
			}
		case xml.EndElement:
			if depth == 3 {
				v := cellText(childText.String())
				if v != "" {
					if _, seen := titles[child]; !seen && contains(titleNames, child) {
						titles[child] = v
					}
					if _, seen := dates[child]; !seen && contains(dateNames, child) {
						dates[child] = v
					}
				}
				child = ""
			}
			depth--
		case xml.CharData:
			if depth >= 3 && childText.Len() < textBudget {
				childText.Write(t)
			}
			if depth >= 2 && allText.Len() < textBudget {
				allText.Write(t)
				allText.WriteByte(' ')
			}
		}
	}
	var s summary
	for _, n := range titleNames {
		if v := titles[n]; v != "" {
			s.Title = v
			break
		}
	}
	for _, n := range dateNames {
		if v := dates[n]; v != "" {
			s.Date = shortTime(v)
			break
		}
	}
	if s.Title == "" {
		s.Title = cellText(allText.String())
	}
	if s.Title == "" && root != "" {
		s.Title = "<" + root + ">"
	}
	return s
}

// parsedSummary takes the title and date of parsed JSON (the microblog
// parser's "title" and "published"/"updated"; any parser's fields of the
// same names). ok is false when parsed holds neither.
func parsedSummary(parsed json.RawMessage) (summary, bool) {
	var m map[string]any
	if len(parsed) == 0 || json.Unmarshal(parsed, &m) != nil {
		return summary{}, false
	}
	var s summary
	for _, n := range titleNames {
		if v, ok := m[n].(string); ok && strings.TrimSpace(v) != "" {
			s.Title = cellText(v)
			break
		}
	}
	for _, n := range dateNames {
		if v, ok := m[n].(string); ok && v != "" {
			s.Date = shortTime(v)
			break
		}
	}
	return s, s.Title != "" || s.Date != ""
}

// shortTime shows an RFC 3339 time as "2006-01-02 15:04" UTC; other text
// is returned on one line.
func shortTime(v string) string {
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, strings.TrimSpace(v)); err == nil {
			if layout == "2006-01-02" {
				return t.Format("2006-01-02")
			}
			return t.UTC().Format("2006-01-02 15:04")
		}
	}
	return cellText(v)
}

// cellText makes text from the network safe for one table cell: control
// characters (newlines, tabs, escape sequences) and bidirectional
// overrides become spaces, runs of spaces collapse.
func cellText(s string) string {
	var b strings.Builder
	space := true
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Bidi_Control, r) {
			if !space {
				b.WriteByte(' ')
				space = true
			}
			continue
		}
		b.WriteRune(r)
		space = false
	}
	return strings.TrimRight(b.String(), " ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ellipsis shortens s to n runes (n ≥ 1).
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	return string(r[:n-1]) + "…"
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// termWidth is the width of w when it is a terminal, else def.
func termWidth(w io.Writer, def int) int {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return def
}

// table is a text table whose last column is cut to fit a width: rows are
// cells already made safe (cellText).
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write aligns the columns with two spaces between them and cuts the last
// column so that lines fit in width runes (at least 20 runes are kept).
func (t *table) write(w io.Writer, width int) error {
	n := len(t.header)
	widths := make([]int, n)
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if i < n-1 {
				widths[i] = max(widths[i], len([]rune(c)))
			}
		}
	}
	used := 0
	for i := 0; i < n-1; i++ {
		used += widths[i] + 2
	}
	last := max(width-used, 20)
	var b bytes.Buffer
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if i == n-1 {
				b.WriteString(ellipsis(c, last))
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
		}
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// count says "1 item", "3 items".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
