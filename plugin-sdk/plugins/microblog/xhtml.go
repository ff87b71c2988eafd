package microblog

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// NSXHTML is the XHTML namespace.
const NSXHTML = "http://www.w3.org/1999/xhtml"

// maxDepth bounds the element nesting kept from rich content; deeper
// elements are flattened into their text.
const maxDepth = 64

// allowed lists the kept elements and the attributes each keeps (besides
// the global title, lang and dir).
var allowed = map[string][]string{
	"a": {"href"}, "abbr": nil, "b": nil, "blockquote": {"cite"}, "br": nil, "cite": nil,
	"code": nil, "dd": nil, "del": nil, "div": nil, "dl": nil, "dt": nil, "em": nil,
	"figcaption": nil, "figure": nil, "h1": nil, "h2": nil, "h3": nil, "h4": nil,
	"h5": nil, "h6": nil, "hr": nil, "i": nil, "img": {"src", "alt", "width", "height"},
	"ins": nil, "kbd": nil, "li": nil, "mark": nil, "ol": {"start"}, "p": nil, "pre": nil,
	"q": {"cite"}, "s": nil, "samp": nil, "small": nil, "span": nil, "strike": nil,
	"strong": nil, "sub": nil, "sup": nil, "table": nil, "tbody": nil,
	"td": {"colspan", "rowspan"}, "tfoot": nil, "th": {"colspan", "rowspan"}, "thead": nil,
	"tr": nil, "u": nil, "ul": nil, "var": nil,
}

// dropped lists the elements removed with their content; any other unknown
// element is replaced by its content.
var dropped = map[string]bool{
	"script": true, "style": true, "iframe": true, "object": true, "embed": true,
	"applet": true, "frame": true, "frameset": true, "noscript": true, "template": true,
	"svg": true, "math": true, "head": true, "title": true, "meta": true, "link": true,
	"base": true, "form": true, "input": true, "button": true, "select": true,
	"textarea": true, "audio": true, "video": true, "source": true, "track": true,
	"canvas": true, "noembed": true, "param": true,
}

var urlAttrs = map[string]bool{"href": true, "src": true, "cite": true}

var voidElems = map[string]bool{"br": true, "hr": true, "img": true}

var blockElems = map[string]bool{
	"p": true, "div": true, "br": true, "li": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "blockquote": true, "pre": true, "tr": true,
	"hr": true, "dt": true, "dd": true, "table": true, "ul": true, "ol": true,
	"figure": true, "figcaption": true,
}

// safeURL reports whether a link may be kept: http, https, mailto, xmpp or a
// relative reference.
func safeURL(v string) bool {
	v = strings.TrimSpace(v)
	u, err := url.Parse(v)
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https", "mailto", "xmpp":
		return true
	case "": // relative reference
		return true
	}
	return false
}

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
			if skip == "" && dropped[string(name)] {
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

// sanitize renders the fragment's children as a sanitised XHTML div and as
// plain text.
func sanitize(root *html.Node) rich {
	var x, t bytes.Buffer
	x.WriteString(`<div xmlns="` + NSXHTML + `">`)
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		render(&x, &t, c, false)
	}
	x.WriteString(`</div>`)
	return rich{xhtml: x.String(), text: tidyText(t.String())}
}

func render(x, t *bytes.Buffer, n *html.Node, pre bool) {
	switch n.Type {
	case html.TextNode:
		s := cleanChars(n.Data)
		escapeText(x, s)
		t.WriteString(s)
		return
	case html.ElementNode:
	default:
		return // comments, doctypes
	}
	name := n.Data
	if dropped[name] {
		return
	}
	attrs, ok := allowed[name]
	if !ok { // unknown: keep the content only
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			render(x, t, c, pre)
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
		if a.Key != "title" && a.Key != "lang" && a.Key != "dir" && !contains(attrs, a.Key) {
			continue
		}
		if urlAttrs[a.Key] && !safeURL(a.Val) {
			continue
		}
		x.WriteString(" " + a.Key + `="`)
		escapeAttr(x, cleanChars(a.Val))
		x.WriteByte('"')
	}
	if voidElems[name] {
		x.WriteString("/>")
		if name == "img" {
			for _, a := range n.Attr {
				if a.Key == "alt" && a.Val != "" {
					t.WriteString(" " + cleanChars(a.Val) + " ")
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
		render(x, t, c, pre || name == "pre")
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

// cleanChars makes s valid UTF-8 without characters XML 1.0 forbids.
func cleanChars(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			return -1
		}
		return r
	}, s)
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
