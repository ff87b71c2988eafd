package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct{ xml, title, date string }{
		{"<item id='a'><entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>Hello\n  <b>world</b></title><published>2026-02-01T10:00:00+01:00</published>" +
			"<updated>2026-03-01T00:00:00Z</updated><content>ignored</content></entry></item>", "Hello world", "2026-02-01 09:00"},
		{"<item id='b'><entry xmlns='http://www.w3.org/2005/Atom'><updated>2026-03-01</updated><content>Only content</content></entry></item>", "2026-03-01 Only content", "2026-03-01"},
		{"<item id='c'><note xmlns='urn:example:note'>Hello <b>world</b> &amp; friends</note></item>", "Hello world & friends", ""},
		{"<item id='d'><geoloc xmlns='http://jabber.org/protocol/geoloc'/></item>", "<geoloc (http://jabber.org/protocol/geoloc)>", ""},
		{"<item id='e'><x xmlns='urn:x'><subject>Re: \u009b31mred\u0085\t\r\nline\u202e</subject><date>yesterday</date></x></item>", "Re: 31mred line", "yesterday"},
		{"<item id='f'><broken", "", ""},
	} {
		s := summarize(tc.xml)
		if s.Title != tc.title || s.Date != tc.date {
			t.Errorf("summarize(%q) = %+v, want %q, %q", tc.xml, s, tc.title, tc.date)
		}
	}
	s, ok := parsedSummary(json.RawMessage(`{"title":"Parsed\ttitle","published":"2026-01-02T03:04:05Z","tags":["x"]}`))
	if !ok || s.Title != "Parsed title" || s.Date != "2026-01-02 03:04" {
		t.Errorf("parsedSummary = %+v %v", s, ok)
	}
	if _, ok := parsedSummary(json.RawMessage(`{"tags":[]}`)); ok {
		t.Error("parsedSummary without title or date")
	}
	if _, ok := parsedSummary(json.RawMessage(`null`)); ok {
		t.Error("parsedSummary of null")
	}
}

func TestTableFitsWidth(t *testing.T) {
	tb := &table{header: []string{"ID", "SUMMARY"}}
	tb.add("first", strings.Repeat("word ", 40))
	tb.add("2", "short")
	var b bytes.Buffer
	if err := tb.write(&b, 40); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID     SUMMARY") || !strings.HasSuffix(lines[1], "…") || len([]rune(lines[1])) != 40 ||
		lines[2] != "2      short" {
		t.Errorf("table:\n%s", b.String())
	}
}

// FuzzSummarize: any payload gives one printable line, quickly.
func FuzzSummarize(f *testing.F) {
	for _, s := range []string{
		"<item id='a'><entry xmlns='http://www.w3.org/2005/Atom'><title>t</title></entry></item>",
		"<item id='b'><a><b><c><title>deep</title></c></b></a></item>",
		"<item><x>\x00\x1b]0;title\x07</x></item>",
		"<item id='c'><![CDATA[raw]]></item>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, xml string) {
		s := summarize(xml)
		for _, v := range []string{s.Title, s.Date} {
			for _, r := range v {
				if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\n' {
					t.Fatalf("control character %U in %q", r, v)
				}
			}
		}
	})
}
