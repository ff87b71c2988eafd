// Package safe is what every first-party parser applies to the data it
// outputs, so that a frontend that trusts a parsed field more than it
// should is still not hurt: URLs pass a scheme allow-list, and plain text
// holds nothing an HTML parser reads as markup. It holds no state.
package safe

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Schemes are the URL schemes a parsed URL may have.
var Schemes = []string{"http", "https", "xmpp", "mailto", "geo", "tel"}

// DataImageTypes are the media types a data: URL may have, in image sources
// only (ImageURL).
var DataImageTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp"}

var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):`)

// dataImageRE matches the head of an allowed data: image URL (parameters
// such as charset or name allowed), up to the base64 payload.
var dataImageRE = regexp.MustCompile(`^(?i:data:(image/(?:png|jpeg|gif|webp))((?:;[A-Za-z0-9!#$&.+^_-]+=[A-Za-z0-9!#$&.+^_%-]*)*);base64,)`)

// normalize does to raw what a browser's URL parser does first (WHATWG
// URL: leading and trailing C0 controls and spaces stripped, tabs and
// newlines removed anywhere) and refuses what is left with a control
// character or invalid UTF-8.
func normalize(raw string) (string, bool) {
	s := strings.TrimFunc(raw, func(r rune) bool { return r <= 0x20 })
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
	if s == "" || !utf8.ValidString(s) {
		return "", false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", false
		}
	}
	return s, true
}

// Scheme returns the lower-case scheme of raw once normalised as a browser
// would (empty for a relative reference or a string that is not a URL).
func Scheme(raw string) string {
	s, ok := normalize(raw)
	if !ok {
		return ""
	}
	m := schemeRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

// URL returns raw as it may be output, and whether it may: an absolute URL
// whose scheme is in Schemes (relative references are refused: nothing
// says what they are relative to). The URL returned is normalised (see
// normalize), its scheme in lower case, and the characters that have no
// business in a URL and a meaning in HTML (< > " ' ` space \ ^ { | })
// percent-encoded.
func URL(raw string) (string, bool) {
	s, ok := normalize(raw)
	if !ok {
		return "", false
	}
	m := schemeRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	scheme := strings.ToLower(m[1])
	allowed := false
	for _, a := range Schemes {
		allowed = allowed || a == scheme
	}
	if !allowed {
		return "", false
	}
	s = scheme + ":" + escapeOdd(s[len(m[0]):])
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	if (scheme == "http" || scheme == "https") && u.Host == "" {
		return "", false
	}
	if scheme != "http" && scheme != "https" && s == scheme+":" {
		return "", false
	}
	return s, true
}

// ImageURL is URL for an image source: it also accepts data: URLs of the
// media types in DataImageTypes with a valid base64 payload.
func ImageURL(raw string) (string, bool) {
	if u, ok := URL(raw); ok {
		return u, true
	}
	s, ok := normalize(raw)
	if !ok {
		return "", false
	}
	m := dataImageRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	payload := s[len(m[0]):]
	if _, err := base64.StdEncoding.DecodeString(payload); err != nil || payload == "" {
		return "", false
	}
	return "data:" + strings.ToLower(m[1]) + m[2] + ";base64," + payload, true
}

// escapeOdd percent-encodes the characters of s that are not allowed in a
// URL and mean something in HTML or to a shell.
func escapeOdd(s string) string {
	if !strings.ContainsAny(s, "<>\"'` \\^{|}") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte("<>\"'` \\^{|}", c) >= 0 {
			b.WriteString("%" + strings.ToUpper(hex2(c)))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

// WordJoiner is the invisible character Text puts after a '<' that would
// open markup.
const WordJoiner = '\u2060'

// Text returns s as plain text that may be output: valid UTF-8 without
// the characters XML 1.0 forbids, and without anything an HTML parser
// would read as markup — a '<' followed by a letter, '/', '!' or '?'
// (which opens a tag, a comment or a declaration) gets an invisible
// U+2060 WORD JOINER after it, so the text reads the same and no
// frontend that renders it as HTML by mistake ever runs it.
func Text(s string) string {
	s = Chars(s)
	if !strings.Contains(s, "<") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] == '<' && i+1 < len(s) && opensMarkup(s[i+1]) {
			b.WriteRune(WordJoiner)
		}
	}
	return b.String()
}

func opensMarkup(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '/' || c == '!' || c == '?'
}

// Chars makes s valid UTF-8 without the characters XML 1.0 forbids.
func Chars(s string) string {
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

// TextPtr is Text of the trimmed s, nil when that is empty.
func TextPtr(s string) *string {
	s = strings.TrimSpace(Text(s))
	if s == "" {
		return nil
	}
	return &s
}

// URLPtr is URL as a pointer: nil when raw is not allowed.
func URLPtr(raw string) *string {
	if u, ok := URL(raw); ok {
		return &u
	}
	return nil
}
