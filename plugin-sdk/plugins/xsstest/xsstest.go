// Package xsstest is test support for the first-party parsers: a corpus of
// XSS vectors (Vectors) and the check every parsed item must pass (Check),
// so that a frontend that renders any parsed field as HTML by mistake is
// never made to run anything. The plugins' own tests run the corpus
// through a plugin process; the daemon's tests run it through the
// daemon's re-exec path and end to end. It holds no state.
//
// The check does not reuse the code it checks: it parses every string of
// the output with golang.org/x/net/html, accepts only the elements and
// attributes of the microblog sanitiser's policy tables, and reads URLs as
// a browser does (entities decoded, whitespace and control characters
// stripped) against its own copy of the scheme allow-list.
package xsstest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"example.org/backend/plugin-sdk/plugins/microblog"
)

// Schemes are the URL schemes the check accepts; data: only for the images
// of DataImage.
var Schemes = []string{"http", "https", "xmpp", "mailto", "geo", "tel"}

// DataImage matches a data: URL the check accepts in an image source
// (after normalisation).
var DataImage = regexp.MustCompile(`^data:image/(png|jpeg|gif|webp)[;,]`)

// Rules say where a parser's output holds URLs: JSON paths with [] for any
// array index (e.g. "links[].href").
type Rules struct {
	URLPaths   []string
	ImagePaths []string
}

// MicroblogRules are the URL fields of the microblog parsers (README).
var MicroblogRules = Rules{URLPaths: []string{
	"uri", "links[].href", "author.uri", "authors[].uri", "contributors[].uri", "comments[].uri",
	"in_reply_to[].href", "repeated.uri", "attachments[].url", "geoloc.uri",
}}

// ParserRules are the rules of each first-party parser, by parser name.
var ParserRules = map[string]Rules{
	"microblog":          MicroblogRules,
	"microblog-comments": MicroblogRules,
	"bookmarks":          {},
	"nickname":           {},
	"avatar-metadata":    {URLPaths: []string{"avatar.url", "infos[].url"}},
	"vcard4": {URLPaths: []string{"impps[].uri", "urls[].uri", "tels[].uri", "geo[]"},
		ImagePaths: []string{"photos[]"}},
}

// Check returns what in parsed (the JSON of one parsed item) breaks the
// rules: every string value, parsed as an HTML fragment, may hold only
// text and the elements of microblog.PolicyElements with the attributes
// the policy allows (URL attributes with an allowed scheme, styles without
// url(), expression() or escapes, classes of code highlighters); every
// value at a URL path must have an allowed scheme.
func Check(parsed []byte, r Rules) []string {
	var doc any
	if err := json.Unmarshal(parsed, &doc); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var out []string
	walk("", doc, func(path, s string) {
		out = append(out, checkHTML(path, s)...)
		switch {
		case slices.Contains(r.URLPaths, path):
			if err := checkURL(html.UnescapeString(s), false); err != "" {
				out = append(out, fmt.Sprintf("%s: %q: %s", path, s, err))
			}
		case slices.Contains(r.ImagePaths, path):
			if err := checkURL(html.UnescapeString(s), true); err != "" {
				out = append(out, fmt.Sprintf("%s: %q: %s", path, s, err))
			}
		}
	})
	return out
}

func walk(path string, v any, f func(path, s string)) {
	switch x := v.(type) {
	case string:
		f(path, x)
	case []any:
		for _, e := range x {
			walk(path+"[]", e, f)
		}
	case map[string]any:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			walk(p, e, f)
		}
	}
}

// checkHTML parses s as the content of a <div> and checks every node.
func checkHTML(path, s string) []string {
	ctx := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	nodes, err := html.ParseFragment(strings.NewReader(s), ctx)
	if err != nil {
		return []string{fmt.Sprintf("%s: does not parse as HTML: %v", path, err)}
	}
	var out []string
	var visit func(n *html.Node)
	visit = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
		case html.ElementNode:
			out = append(out, checkElement(path, n)...)
		default:
			out = append(out, fmt.Sprintf("%s: a node of type %d (%q) in %.200q", path, n.Type, n.Data, s))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	for _, n := range nodes {
		visit(n)
	}
	return out
}

func checkElement(path string, n *html.Node) []string {
	attrs, ok := microblog.PolicyElements[n.Data]
	if !ok || n.Namespace != "" {
		return []string{fmt.Sprintf("%s: element <%s> (namespace %q) is not on the policy list", path, n.Data, n.Namespace)}
	}
	var out []string
	for _, a := range n.Attr {
		bad := func(why string) {
			out = append(out, fmt.Sprintf("%s: <%s %s=%q>: %s", path, n.Data, a.Key, a.Val, why))
		}
		switch {
		case a.Namespace != "":
			bad("namespaced attribute")
		case a.Key == "xmlns":
			if a.Val != microblog.NSXHTML {
				bad("xmlns other than XHTML's")
			}
		case a.Key == "class":
			if !slices.Contains(microblog.PolicyClassElements, n.Data) {
				bad("class is not allowed on this element")
			}
			for _, c := range strings.Fields(a.Val) {
				if !microblog.PolicyClass(c) {
					bad("class " + c + " is not a code highlighter's")
				}
			}
		case a.Key == "style":
			if why := checkStyle(a.Val); why != "" {
				bad(why)
			}
		case slices.Contains(microblog.PolicyGlobalAttrs, a.Key), slices.Contains(attrs, a.Key):
			if microblog.PolicyURLAttrs[a.Key] {
				if why := checkURL(a.Val, n.Data == "img" && a.Key == "src"); why != "" {
					bad(why)
				}
			}
		default:
			bad("attribute is not on the policy list")
		}
	}
	return out
}

// checkStyle accepts declarations of XEP-0071's recommended properties
// whose values call no function but rgb()/rgba()/hsl()/hsla().
func checkStyle(v string) string {
	xep0071 := []string{"background-color", "color", "font-family", "font-size", "font-style", "font-weight",
		"margin-left", "margin-right", "text-align", "text-decoration"}
	lv := strings.ToLower(v)
	for _, bad := range []string{"url(", "expression", "\\", "javascript", "behavior", "@import", "/*"} {
		if strings.Contains(lv, bad) {
			return "style holds " + bad
		}
	}
	for _, decl := range strings.Split(lv, ";") {
		if strings.TrimSpace(decl) == "" {
			continue
		}
		prop, value, ok := strings.Cut(decl, ":")
		if !ok || !slices.Contains(xep0071, strings.TrimSpace(prop)) {
			return "style property " + strings.TrimSpace(prop) + " is not XEP-0071's"
		}
		for _, m := range regexp.MustCompile(`([a-z-]*)\s*\(`).FindAllStringSubmatch(value, -1) {
			if !slices.Contains([]string{"rgb", "rgba", "hsl", "hsla"}, m[1]) {
				return "style calls " + m[1] + "()"
			}
		}
	}
	return ""
}

var schemeRE = regexp.MustCompile(`^([a-z][a-z0-9+.-]*):`)

// checkURL reads u as a browser would (whitespace and control characters
// anywhere removed, case folded) and requires an allowed scheme.
func checkURL(u string, image bool) string {
	var b strings.Builder
	for _, r := range u {
		if r <= 0x20 || (r >= 0x7f && r <= 0xa0) || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			continue
		}
		b.WriteRune(r)
	}
	n := strings.ToLower(b.String())
	m := schemeRE.FindStringSubmatch(n)
	switch {
	case m == nil:
		return "no scheme (a relative reference)"
	case slices.Contains(Schemes, m[1]):
		return ""
	case m[1] == "data" && image && DataImage.MatchString(n):
		return ""
	}
	return "scheme " + m[1] + " is not allowed"
}
