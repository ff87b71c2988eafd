// Atom text constructs (title, summary, rights) and content: plain text,
// HTML or XHTML, read into the text and sanitised markup of an entry.

package microblog

import (
	"encoding/base64"
	"encoding/xml"
	"mime"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"

	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// construct is what one text construct (title, summary, rights, content)
// said: its plain version and its rich version.
type construct struct {
	text, rich *rich
	seen       bool
}

func (c *construct) add(r rich, isRich bool) {
	c.seen = true
	switch {
	case isRich && c.rich == nil:
		c.rich = &r
	case !isRich && c.text == nil:
		c.text = &r
	}
}

// pick chooses the plain text (the text version, else the rich version's
// text) and the XHTML of a construct.
func pick(c construct, opts Options) (*string, *string) {
	var plain, x *string
	if c.text != nil {
		plain = textPtr(c.text.text)
	}
	if c.rich != nil {
		if plain == nil {
			plain = textPtr(c.rich.text)
		}
		if !opts.DropXHTML {
			x = ptr(c.rich.xhtml)
		}
	}
	return plain, x
}

// readRich reads a text construct by its type: text (default), html
// (escaped HTML) or xhtml (an XHTML div).
func readRich(dec *xml.Decoder, el xml.StartElement) (r rich, isRich bool, err error) {
	switch strings.ToLower(strings.TrimSpace(attr(el, "type"))) {
	case "xhtml", "application/xhtml+xml":
		return readXHTML(dec, el)
	case "html", "text/html":
		s, err := readText(dec)
		if err != nil {
			return rich{}, false, err
		}
		return readHTML(s)
	default:
		s, err := readText(dec)
		if err != nil {
			return rich{}, false, err
		}
		return rich{text: strings.TrimSpace(s)}, false, nil
	}
}

func readXHTML(dec *xml.Decoder, el xml.StartElement) (rich, bool, error) {
	root, err := xmlTree(dec, el)
	if err != nil {
		return rich{}, false, err
	}
	return sanitize(unwrapDiv(root)), true, nil
}

func readHTML(s string) (rich, bool, error) {
	root, err := htmlTree(s)
	if err != nil { // e.g. nesting too deep to build a tree: keep the text
		return rich{text: tidyText(safe.Chars(htmlText(s)))}, false, nil
	}
	return sanitize(root), true, nil
}

// contentOut is what a <content> gave: inline text or rich text, or a link
// to content that is not inline text.
type contentOut struct {
	r      rich
	isRich bool
	link   *Link
}

// readContent reads a <content> (RFC 4287 §4.1.3): out-of-line (src) as a
// link; text, html and xhtml as text constructs; other text/* types and XML
// types inline; any other type is base64 (§4.1.3.3), decoded when the type
// is text-like and the bytes UTF-8 text, else a link (rel "content") to
// the item itself, which carries the data.
func readContent(dec *xml.Decoder, el xml.StartElement, itemURI *string) (contentOut, error) {
	typ := strings.TrimSpace(attr(el, "type"))
	if src := attr(el, "src"); src != "" {
		if err := dec.Skip(); err != nil {
			return contentOut{}, err
		}
		href, ok := safe.URL(src)
		if !ok { // content elsewhere, at a URL that is not allowed
			return contentOut{}, nil
		}
		return contentOut{link: &Link{Rel: "content", Href: href, Type: textPtr(typ)}}, nil
	}
	lower := strings.ToLower(typ)
	switch lower {
	case "", "text", "html", "xhtml", "text/html", "application/xhtml+xml":
		r, isRich, err := readRich(dec, el)
		return contentOut{r: r, isRich: isRich}, err
	}
	mt, _, err := mime.ParseMediaType(lower)
	if err != nil || strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "/xml") || strings.HasSuffix(mt, "+xml") {
		s, err := readText(dec)
		return contentOut{r: rich{text: strings.TrimSpace(s)}}, err
	}
	s, err := readText(dec)
	if err != nil {
		return contentOut{}, err
	}
	data, derr := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if derr == nil && textLike(mt) && utf8.Valid(data) {
		return contentOut{r: rich{text: strings.TrimSpace(string(data))}}, nil
	}
	if itemURI == nil {
		return contentOut{}, nil
	}
	l := &Link{Rel: "content", Href: *itemURI, Type: textPtr(mt)}
	if derr == nil {
		n := int64(len(data))
		l.Length = &n
	}
	return contentOut{link: l}, nil
}

// textLike reports whether a media type that is neither text/* nor XML
// holds text (RFC 4287 still has it base64-encoded).
func textLike(mt string) bool {
	if strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+yaml") {
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/ecmascript", "application/x-javascript",
		"application/x-sh", "application/x-shellscript", "application/sql", "application/toml",
		"application/yaml", "application/x-yaml", "application/x-tex", "application/x-latex",
		"application/x-python", "application/x-perl", "application/x-ruby", "application/x-httpd-php",
		"application/mbox", "message/rfc822":
		return true
	}
	return false
}

// unwrapDiv returns the XHTML div that Atom wraps xhtml content in, or root
// when the content is not wrapped.
func unwrapDiv(root *html.Node) *html.Node {
	var div *html.Node
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		switch {
		case c.Type == html.TextNode && strings.TrimSpace(c.Data) == "":
		case c.Type == html.ElementNode && c.Data == "div" && div == nil:
			div = c
		default:
			return root
		}
	}
	if div == nil {
		return root
	}
	return div
}
