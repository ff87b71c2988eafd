package safe

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func TestURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://example.org/a?b=1&c=2":     "https://example.org/a?b=1&c=2",
		"  HTTP://Example.org/x \n":         "http://Example.org/x",
		"xmpp:romeo@montague.lit?;node=x":   "xmpp:romeo@montague.lit?;node=x",
		"mailto:juliet@capulet.lit":         "mailto:juliet@capulet.lit",
		"geo:48.2,-3.3":                     "geo:48.2,-3.3",
		"tel:+1-303-555-1212":               "tel:+1-303-555-1212",
		"https://e.org/<script>'\"x`":       "https://e.org/%3Cscript%3E%27%22x%60",
		"https://e.org/a b":                 "https://e.org/a%20b",
		"ht\ttps://e.org/":                  "https://e.org/",
		"https://e.org/\u00e9t\u00e9":       "https://e.org/\u00e9t\u00e9",
		"javascript:alert(1)":               "",
		"JaVaScRiPt:alert(1)":               "",
		" \x01javascript:alert(1)":          "",
		"java\tscript:alert(1)":             "",
		"java\nscript:alert(1)":             "",
		"java\x00script:alert(1)":           "",
		"vbscript:msgbox":                   "",
		"data:text/html,<script>":           "",
		"data:image/png;base64,iVBORw0KGgo": "",
		"file:///etc/passwd":                "",
		"/relative/path":                    "",
		"//evil.example/x":                  "",
		"&#106;avascript:alert(1)":          "",
		"javascript&colon;alert(1)":         "",
		"https:":                            "",
		"https:/nohost":                     "",
		"mailto:":                           "",
		"https://e.org/\u0085x":             "",
		"":                                  "",
	} {
		got, ok := URL(raw)
		if ok != (want != "") || got != want {
			t.Errorf("URL(%q) = %q, %v; want %q", raw, got, ok, want)
		}
	}
}

func TestImageURL(t *testing.T) {
	for raw, want := range map[string]string{
		"data:image/png;base64,iVBORw0KGgo=":            "data:image/png;base64,iVBORw0KGgo=",
		"DATA:IMAGE/JPEG;base64,/9j/4AAQ":               "data:image/jpeg;base64,/9j/4AAQ",
		"data:image/webp;name=a.webp;base64,UklGRg==":   "data:image/webp;name=a.webp;base64,UklGRg==",
		"data:image/gif;base64,R0lG\nODlh":              "data:image/gif;base64,R0lGODlh",
		"https://e.org/cat.png":                         "https://e.org/cat.png",
		"data:image/svg+xml;base64,PHN2Zz4=":            "",
		"data:text/html;base64,PHNjcmlwdD4=":            "",
		"data:image/png,rawdata":                        "",
		"data:image/png;base64,not base64!":             "",
		"data:image/png;base64,":                        "",
		"data:image/png;charset=<x>;base64,iVBORw0KGgo": "",
		"javascript:alert(1)":                           "",
	} {
		got, ok := ImageURL(raw)
		if ok != (want != "") || got != want {
			t.Errorf("ImageURL(%q) = %q, %v; want %q", raw, got, ok, want)
		}
	}
}

func TestScheme(t *testing.T) {
	for raw, want := range map[string]string{"JaVa\tScript:x": "javascript", " HTTPS://x": "https", "x/y:z": "", "": ""} {
		if got := Scheme(raw); got != want {
			t.Errorf("Scheme(%q) = %q, want %q", raw, got, want)
		}
	}
}

// Text never holds markup: parsed as HTML it is one text node with the
// same characters but the word joiners.
func TestText(t *testing.T) {
	for _, s := range []string{
		"plain", "a < b and c > d", "Vec<String>", "<script>alert(1)</script>", "<!-- c -->", "<?php ?>",
		"</p>", "<img src=x onerror=alert(1)>", "x\x01y\uFFFEz", "<<b>>", "<", "1<2",
	} {
		got := Text(s)
		nodes, err := html.ParseFragment(strings.NewReader(got), &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Type != html.TextNode {
				t.Errorf("Text(%q) = %q holds a %v node", s, got, n.Type)
			}
		}
		if strings.ReplaceAll(got, string(WordJoiner), "") != Chars(s) {
			t.Errorf("Text(%q) = %q changed the text", s, got)
		}
	}
	if Text("a < b") != "a < b" || Chars("x\x01y") != "xy" {
		t.Error("Text changed text that opens no markup")
	}
}
