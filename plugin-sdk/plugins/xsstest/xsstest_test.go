package xsstest

import (
	"strings"
	"testing"
)

// The check rejects what it must: each fixture is an output with one
// violation.
func TestCheckRejects(t *testing.T) {
	for _, bad := range []struct{ json, want string }{
		{`{"content_xhtml":"<div><script>alert(1)</script></div>"}`, "<script>"},
		{`{"content":"<img src=x onerror=alert(1)>"}`, "<img"},
		{`{"content_xhtml":"<p onclick=\"x()\">p</p>"}`, "onclick"},
		{`{"content_xhtml":"<a href=\"jav&#x09;ascript:alert(1)\">a</a>"}`, "scheme javascript"},
		{`{"content_xhtml":"<a href=\"/relative\">a</a>"}`, "relative"},
		{`{"content_xhtml":"<img src=\"data:image/svg+xml;base64,PHN2Zz4=\" alt=\"\"/>"}`, "scheme data"},
		{`{"content_xhtml":"<a href=\"data:image/png;base64,AAAA\">a</a>"}`, "scheme data"},
		{`{"content_xhtml":"<p style=\"background: url(x)\">p</p>"}`, "url("},
		{`{"content_xhtml":"<p style=\"position: fixed\">p</p>"}`, "position"},
		{`{"content_xhtml":"<span class=\"btn\">p</span>"}`, "class btn"},
		{`{"content_xhtml":"<p class=\"k\">p</p>"}`, "class is not allowed"},
		{`{"content_xhtml":"<svg></svg>"}`, "<svg>"},
		{`{"content_xhtml":"<!-- x -->"}`, "node of type"},
		{`{"links":[{"href":" JaVa\tScRiPt:alert(1)"}]}`, "links[].href"},
		{`{"author":{"uri":"vbscript:x"}}`, "author.uri"},
		{`{"links":[{"href":"&#106;avascript:alert(1)"}]}`, "scheme javascript"},
	} {
		got := Check([]byte(bad.json), MicroblogRules)
		if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), bad.want) {
			t.Errorf("%s: violations %q, want one about %q", bad.json, got, bad.want)
		}
	}
	good := `{"content_xhtml":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p style=\"color: rgb(1, 2, 3)\">a <a href=\"https://e.org/\">b</a></p><img src=\"data:image/png;base64,AAAA\" alt=\"\"/><pre><code class=\"hljs language-go\">x</code></pre></div>",` +
		`"links":[{"href":"xmpp:a@b?;node=x"}],"content":"a < b"}`
	if v := Check([]byte(good), MicroblogRules); len(v) != 0 {
		t.Errorf("a good output is refused: %q", v)
	}
}
