package microblog

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"sync"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// NSXHTML is the XHTML namespace.
const NSXHTML = "http://www.w3.org/1999/xhtml"

// maxDepth bounds the element nesting kept from rich content; deeper
// elements are flattened into their text.
const maxDepth = 64

var voidElems = map[string]bool{"br": true, "hr": true, "img": true}

// htmlVoid are the void elements of HTML (no end tag, no content).
var htmlVoid = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
	"input": true, "link": true, "meta": true, "param": true, "source": true, "track": true, "wbr": true,
}

var blockElems = map[string]bool{
	"p": true, "div": true, "br": true, "li": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "blockquote": true, "pre": true, "tr": true,
	"hr": true, "dt": true, "dd": true, "table": true, "ul": true, "ol": true,
	"figure": true, "figcaption": true, "address": true, "caption": true,
}

var skipped = func() map[string]bool {
	m := map[string]bool{}
	for _, e := range skippedElements {
		m[e] = true
	}
	return m
}()

// xmlTree reads the children of the element start (already consumed) into a
// fragment of html nodes, up to its end element.
func xmlTree(dec *xml.Decoder, start xml.StartElement) (*html.Node, error) {
	root := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	cur, depth, kept := root, 0, 0 // kept: depth of the deepest kept element
	var stack []*html.Node
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth > maxDepth {
				continue
			}
			n := &html.Node{Type: html.ElementNode}
			if t.Name.Space == NSXHTML {
				n.Data = strings.ToLower(t.Name.Local)
				n.DataAtom = atom.Lookup([]byte(n.Data))
			}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" || a.Name.Space == NSXHTML:
					n.Attr = append(n.Attr, html.Attribute{Key: strings.ToLower(a.Name.Local), Val: a.Value})
				case a.Name.Space == "http://www.w3.org/XML/1998/namespace" && a.Name.Local == "lang":
					n.Attr = append(n.Attr, html.Attribute{Key: "lang", Val: a.Value})
				}
			}
			cur.AppendChild(n)
			stack = append(stack, cur)
			cur, kept = n, depth
		case xml.EndElement:
			if depth == 0 {
				return root, nil
			}
			if depth == kept {
				cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
				kept--
			}
			depth--
		case xml.CharData:
			cur.AppendChild(&html.Node{Type: html.TextNode, Data: string(t)})
		}
	}
}

// htmlTree parses escaped HTML (Atom type="html") into a fragment.
func htmlTree(s string) (*html.Node, error) {
	ctx := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	nodes, err := html.ParseFragment(strings.NewReader(s), ctx)
	if err != nil {
		return nil, err
	}
	root := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	for _, n := range nodes {
		if n.Parent != nil {
			n.Parent.RemoveChild(n)
		}
		root.AppendChild(n)
	}
	flatten(root, 0)
	return root, nil
}

// htmlText returns the text of HTML without building a tree (for input the
// parser refuses), without the content of dropped elements.
func htmlText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip := ""
	for {
		switch z.Next() {
		case html.ErrorToken:
			return b.String()
		case html.TextToken:
			if skip == "" {
				b.Write(z.Text())
			}
		case html.StartTagToken:
			name, _ := z.TagName()
			if skip == "" && skipped[string(name)] {
				skip = string(name)
			} else if blockElems[string(name)] {
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if string(name) == skip {
				skip = ""
			}
		}
	}
}

// flatten replaces elements deeper than maxDepth by their text.
func flatten(n *html.Node, depth int) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		if depth+1 > maxDepth {
			t := &html.Node{Type: html.TextNode, Data: plainText(c)}
			n.InsertBefore(t, c)
			n.RemoveChild(c)
			c = t
			continue
		}
		flatten(c, depth+1)
	}
}

func plainText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// rich is sanitised rich text: its XHTML and its plain text.
type rich struct {
	xhtml, text string
}

// policy is the sanitiser (see policy.go), built on first use: it holds
// ≈ 0.8 MB of compiled patterns, which a daemon that links this package
// (to re-execute itself as the plugin) but never parses would keep for
// nothing. A bluemonday policy is safe for concurrent use once built.
var policy = sync.OnceValue(newPolicy)

// sanitize renders the fragment's children as a sanitised XHTML div and as
// plain text: the tree is written as HTML (every text escaped), cleaned by
// the bluemonday policy, parsed again and written as XHTML by a writer
// that checks every element and attribute against the policy's tables.
func sanitize(root *html.Node) rich {
	var in bytes.Buffer
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		writeHTML(&in, c)
	}
	clean := policy().Sanitize(in.String())
	ctx := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	nodes, err := html.ParseFragment(strings.NewReader(clean), ctx)
	if err != nil { // cannot happen with a bounded tree; keep the text only
		return rich{text: tidyText(safe.Chars(htmlText(clean)))}
	}
	out := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	for _, n := range nodes {
		if n.Parent != nil {
			n.Parent.RemoveChild(n)
		}
		out.AppendChild(n)
	}
	flatten(out, 0)
	var x, t bytes.Buffer
	x.WriteString(`<div xmlns="` + NSXHTML + `">`)
	for c := out.FirstChild; c != nil; c = c.NextSibling {
		render(&x, &t, c)
	}
	x.WriteString(`</div>`)
	return rich{xhtml: x.String(), text: tidyText(t.String())}
}

// writeHTML writes n as HTML for the sanitiser: every text and attribute
// value escaped (even inside elements HTML reads as raw text, so no text
// ever becomes markup), elements without a name (other namespaces) by
// their content only.
func writeHTML(w *bytes.Buffer, n *html.Node) {
	switch n.Type {
	case html.TextNode:
		w.WriteString(html.EscapeString(safe.Chars(n.Data)))
		return
	case html.ElementNode:
	default:
		return
	}
	if n.Data == "" {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			writeHTML(w, c)
		}
		return
	}
	w.WriteString("<" + n.Data)
	for _, a := range n.Attr {
		if a.Namespace != "" || a.Key == "" {
			continue
		}
		w.WriteString(" " + a.Key + `="` + html.EscapeString(safe.Chars(a.Val)) + `"`)
	}
	w.WriteByte('>')
	if htmlVoid[n.Data] {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			writeHTML(w, c)
		}
		return
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		writeHTML(w, c)
	}
	w.WriteString("</" + n.Data + ">")
}

// render writes the sanitised node n as XHTML to x and its text to t;
// only the elements and attributes of the policy are written.
func render(x, t *bytes.Buffer, n *html.Node) {
	switch n.Type {
	case html.TextNode:
		s := safe.Chars(n.Data)
		escapeText(x, s)
		t.WriteString(s)
		return
	case html.ElementNode:
	default:
		return // comments, doctypes
	}
	name := n.Data
	if n.Namespace != "" || skipped[name] {
		return
	}
	if _, ok := PolicyElements[name]; !ok { // not kept: its content only
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			render(x, t, c)
		}
		return
	}
	if blockElems[name] {
		t.WriteByte('\n')
	}
	x.WriteString("<" + name)
	for _, a := range n.Attr {
		if a.Namespace != "" {
			continue
		}
		v, ok := policyAllows(name, a.Key, safe.Chars(a.Val))
		if !ok {
			continue
		}
		x.WriteString(" " + a.Key + `="`)
		escapeAttr(x, v)
		x.WriteByte('"')
	}
	if voidElems[name] {
		x.WriteString("/>")
		if name == "img" {
			for _, a := range n.Attr {
				if a.Key == "alt" && a.Val != "" {
					t.WriteString(" " + safe.Chars(a.Val) + " ")
				}
			}
		}
		if blockElems[name] {
			t.WriteByte('\n')
		}
		return
	}
	x.WriteByte('>')
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		render(x, t, c)
	}
	x.WriteString("</" + name + ">")
	if blockElems[name] {
		t.WriteByte('\n')
	} else if name == "td" || name == "th" {
		t.WriteByte(' ')
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func escapeText(b *bytes.Buffer, s string) {
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '\r':
			b.WriteString("&#xD;")
		default:
			b.WriteRune(r)
		}
	}
}

func escapeAttr(b *bytes.Buffer, s string) {
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\t':
			b.WriteString("&#x9;")
		case '\n':
			b.WriteString("&#xA;")
		case '\r':
			b.WriteString("&#xD;")
		default:
			b.WriteRune(r)
		}
	}
}

// tidyText collapses white space: one space between words, one newline
// between blocks, no empty lines.
func tidyText(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// readText returns the character data inside the element start (already
// consumed), including that of nested elements, up to its end.
func readText(dec *xml.Decoder) (string, error) {
	var b strings.Builder
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				return b.String(), nil
			}
			depth--
		case xml.CharData:
			b.Write(t)
		}
	}
}
