package microblog

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/microcosm-cc/bluemonday"

	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// The sanitiser's policy: what rich text (title_xhtml, content_xhtml,
// summary_xhtml, rights_xhtml) may hold. It is XEP-0071's XHTML-IM
// Integration Set (the Structure, Text, Hypertext, List, Image and Style
// modules, with their recommended attributes and style properties) plus
// what Atom posts use (inline and block formatting, figures, tables,
// horizontal rules), and the class names code highlighters write.
// bluemonday applies it; the XHTML writer checks its output against the
// same tables before writing it.

// PolicyElements lists the elements kept and the attributes each keeps
// besides PolicyGlobalAttrs. Any other element is replaced by its content,
// except those of skippedElements, dropped with their content.
var PolicyElements = map[string][]string{
	// XEP-0071 Structure and Text modules.
	"div": nil, "p": nil, "br": nil, "span": nil, "abbr": nil, "acronym": nil, "address": nil,
	"blockquote": {"cite"}, "cite": nil, "code": nil, "dfn": nil, "em": nil, "kbd": nil,
	"pre": nil, "q": {"cite"}, "samp": nil, "strong": nil, "var": nil,
	"h1": nil, "h2": nil, "h3": nil, "h4": nil, "h5": nil, "h6": nil,
	// Hypertext, List and Image modules.
	"a": {"href", "type", "hreflang"}, "dl": nil, "dt": nil, "dd": nil, "ol": {"start"}, "ul": nil, "li": nil,
	"img": {"src", "alt", "width", "height"},
	// What Atom posts use besides.
	"b": nil, "i": nil, "u": nil, "s": nil, "strike": nil, "del": nil, "ins": nil, "sub": nil,
	"sup": nil, "small": nil, "mark": nil, "hr": nil, "figure": nil, "figcaption": nil,
	"table": nil, "caption": nil, "thead": nil, "tbody": nil, "tfoot": nil, "tr": nil,
	"td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"},
}

// PolicyGlobalAttrs are kept on every element of PolicyElements: title,
// lang and dir, and style restricted to PolicyStyles.
var PolicyGlobalAttrs = []string{"title", "lang", "dir", "style"}

// PolicyStyles are the style properties kept (XEP-0071 §7's recommended
// CSS1 properties), each value checked by bluemonday's handler for that
// property (no url(), no expression(), no escapes).
var PolicyStyles = []string{
	"background-color", "color", "font-family", "font-size", "font-style", "font-weight",
	"margin-left", "margin-right", "text-align", "text-decoration",
}

// PolicyClassElements may carry a class attribute, and only the names in
// it that code highlighters write (PolicyClass; the others are left
// out, as Libervia does): highlighted code keeps its classes, no other
// class is kept.
var PolicyClassElements = []string{"pre", "code", "span", "div"}

// highlightClass matches one class name written by a code highlighter:
// highlight.js (hljs, hljs-*), Prism (language-*, token and its token
// names), Pygments, Rouge and Chroma (codehilite, highlight, chroma, their
// token classes such as k, nf, s2 — pygmentsClasses — and line-number
// classes) and Pandoc (sourceCode).
const highlightClass = `(?:language-[A-Za-z0-9_+#.-]{1,32}|lang-[A-Za-z0-9_+#.-]{1,32}|hljs(?:-[A-Za-z0-9_-]{1,32})?|` +
	`token|keyword|string|comment|punctuation|operator|function|number|class-name|builtin|boolean|constant|` +
	`variable|property|tag|attr-name|attr-value|selector|regex|important|entity|url|symbol|char|atrule|` +
	`deleted|inserted|namespace|prolog|doctype|cdata|parameter|` +
	`codehilite|highlight|chroma|sourceCode|line|lnt|lntd|lntable|lnlinks|hl|hll|linenos|lineno|write|bg|` +
	pygmentsClasses + `)`

// pygmentsClasses are Pygments' short token classes (pygments.token
// STANDARD_TYPES), which Rouge and Chroma write too.
const pygmentsClasses = `w|esc|err|x|k|kc|kd|kn|kp|kr|kt|n|na|nb|bp|nc|no|nd|ni|ne|nf|fm|py|nl|nn|nx|nt|nv|` +
	`vc|vg|vi|vm|l|ld|s|sa|sb|sc|dl|sd|s2|se|sh|si|sx|sr|s1|ss|m|mb|mf|mh|mi|il|mo|o|ow|p|pm|` +
	`c|ch|cm|cp|cpf|c1|cs|g|gd|ge|ges|gr|gh|gi|go|gp|gs|gu|gt|cl|ln`

// PolicyClass says whether a class name is kept. Its pattern is compiled on
// first use (≈ 0.6 MB: a daemon that links this package but never parses
// does not hold it).
func PolicyClass(name string) bool { return policyClassRE().MatchString(name) }

var policyClassRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^` + highlightClass + `$`) })

// classChars is what bluemonday lets through in a class attribute (the
// writer then keeps the names PolicyClass accepts).
var classChars = regexp.MustCompile(`^[A-Za-z0-9_+#.\s-]{1,512}$`)

// PolicyURLAttrs are the attributes holding URLs: their value must pass the
// scheme allow-list (safe.URL; for img src safe.ImageURL, which also takes
// data: images of the types in safe.DataImageTypes).
var PolicyURLAttrs = map[string]bool{"href": true, "src": true, "cite": true}

// skippedElements are dropped with their content (bluemonday drops
// script, style and its other defaults the same way). Void elements
// (base, meta, link, input, embed…) are not listed: they have no content,
// and bluemonday would skip everything after them waiting for an end tag;
// like any element off the policy they are dropped.
var skippedElements = []string{
	"script", "style", "iframe", "object", "applet", "frame", "frameset", "noscript",
	"template", "svg", "math", "head", "title", "form", "button",
	"select", "option", "textarea", "audio", "video", "canvas", "noembed",
	"noframes", "xmp", "plaintext",
}

// newPolicy builds the bluemonday policy from the tables above.
func newPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	names := make([]string, 0, len(PolicyElements))
	for el := range PolicyElements {
		names = append(names, el)
	}
	sort.Strings(names)
	p.AllowElements(names...)
	p.AllowAttrs("title", "lang").Globally()
	p.AllowAttrs("dir").Matching(regexp.MustCompile(`^(?i:ltr|rtl|auto)$`)).Globally()
	p.AllowStyles(PolicyStyles...).Globally()
	p.AllowAttrs("class").Matching(classChars).OnElements(PolicyClassElements...)
	for _, el := range names {
		for _, a := range PolicyElements[el] {
			switch a {
			case "href", "src", "cite":
				p.AllowAttrs(a).OnElements(el)
			case "start", "colspan", "rowspan", "width", "height":
				p.AllowAttrs(a).Matching(regexp.MustCompile(`^[0-9]{1,6}$`)).OnElements(el)
			case "type":
				p.AllowAttrs(a).Matching(regexp.MustCompile(`^[A-Za-z0-9!#$&.+^_-]{1,64}/[A-Za-z0-9!#$&.+^_-]{1,64}$`)).OnElements(el)
			case "hreflang":
				p.AllowAttrs(a).Matching(regexp.MustCompile(`^[A-Za-z0-9-]{1,35}$`)).OnElements(el)
			default:
				p.AllowAttrs(a).OnElements(el)
			}
		}
	}
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(false)
	p.AllowURLSchemes(safe.Schemes...)
	p.AllowURLSchemeWithCustomPolicy("data", func(u *url.URL) bool {
		_, ok := safe.ImageURL(u.String())
		return ok
	})
	p.SkipElementsContent(skippedElements...)
	p.AddSpaceWhenStrippingTag(false)
	return p
}

// policyAllows reports whether the XHTML writer may write the attribute
// key=val on element el (the same tables as the bluemonday policy). It
// returns the value to write: URLs normalised by the allow-list.
func policyAllows(el, key, val string) (string, bool) {
	attrs, ok := PolicyElements[el]
	if !ok {
		return "", false
	}
	switch {
	case key == "class":
		if !contains(PolicyClassElements, el) {
			return "", false
		}
		var kept []string
		for _, c := range strings.Fields(val) {
			if PolicyClass(c) && !contains(kept, c) {
				kept = append(kept, c)
			}
		}
		return strings.Join(kept, " "), len(kept) > 0
	case key == "style":
		return val, styleAllowed(val)
	case contains(PolicyGlobalAttrs, key), contains(attrs, key):
	default:
		return "", false
	}
	if !PolicyURLAttrs[key] {
		return val, true
	}
	if el == "img" && key == "src" {
		return safe.ImageURL(val)
	}
	return safe.URL(val)
}

// styleAllowed checks a style attribute as bluemonday wrote it: every
// declaration one of PolicyStyles, no function but the colour ones, no
// escape.
func styleAllowed(v string) bool {
	if strings.TrimSpace(v) == "" || strings.ContainsAny(v, `\<>"'`) {
		return false
	}
	for _, decl := range strings.Split(v, ";") {
		decl = strings.TrimSpace(decl)
		if decl == "" {
			continue
		}
		prop, value, ok := strings.Cut(decl, ":")
		if !ok || !contains(PolicyStyles, strings.ToLower(strings.TrimSpace(prop))) {
			return false
		}
		for _, m := range cssFunc.FindAllStringSubmatch(strings.ToLower(value), -1) {
			if m[1] != "rgb" && m[1] != "rgba" && m[1] != "hsl" && m[1] != "hsla" {
				return false
			}
		}
		if strings.Count(value, "(") != len(cssFunc.FindAllString(value, -1)) {
			return false
		}
	}
	return true
}

// cssFunc is a CSS function call's name.
var cssFunc = regexp.MustCompile(`([a-z-]*)\(`)
