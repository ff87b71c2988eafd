package microblog

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func s(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestParseEntrySamples(t *testing.T) {
	tests := []struct {
		file, publisher string
		opts            Options
		check           func(t *testing.T, e *Entry, text string)
	}{
		{file: "xep0277.xml", publisher: "romeo@montague.lit/phone", check: func(t *testing.T, e *Entry, text string) {
			want := map[string]string{
				"atom_id":   "tag:montague.lit,2008-05-08:posts-1cb57d9c-1c46-11dd-838c-001143d5d5db",
				"content":   "hanging out at the Café Napolitano",
				"published": "2008-05-08T18:30:02Z",
				"updated":   "2008-05-08T18:30:02Z",
				"language":  "en",
				"name":      "Romeo Montague",
				"jid":       "romeo@montague.lit",
			}
			got := map[string]string{
				"atom_id": s(e.AtomID), "content": s(e.Content), "published": s(e.Published), "updated": s(e.Updated),
				"language": s(e.Language), "name": s(e.Author.Name), "jid": s(e.Author.JID),
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if !e.Author.JIDVerified {
				t.Error("jid_verified is false for the author's own publish")
			}
			if e.Title != nil || e.TitleXHTML != nil || e.ContentXHTML != nil {
				t.Errorf("a title-only post keeps a title: %q %q %q", s(e.Title), s(e.TitleXHTML), s(e.ContentXHTML))
			}
			if strings.Join(e.Tags, ",") != "coffee,naples" {
				t.Errorf("tags = %q", e.Tags)
			}
			if len(e.Links) != 2 || e.Links[0].Rel != "alternate" || s(e.Links[0].Type) != "text/html" {
				t.Errorf("links = %+v", e.Links)
			}
			if len(e.Comments) != 1 || e.Comments[0].Service != "pubsub.montague.lit" ||
				e.Comments[0].Node != "urn:xmpp:microblog:0:comments/1cb57d9c-1c46-11dd-838c-001143d5d5db" {
				t.Errorf("comments = %+v", e.Comments)
			}
			if text != "hanging out at the Café Napolitano\ncoffee naples" {
				t.Errorf("search text = %q", text)
			}
		}},
		{file: "xhtml.xml", publisher: "mallory@evil.example", check: func(t *testing.T, e *Entry, text string) {
			if s(e.Title) != "Rich title" || s(e.TitleXHTML) != `<div xmlns="http://www.w3.org/1999/xhtml">Rich <b>title</b></div>` {
				t.Errorf("title = %q, xhtml %q", s(e.Title), s(e.TitleXHTML))
			}
			if s(e.Content) != "Plain version of the post" {
				t.Errorf("content = %q", s(e.Content))
			}
			want := `<div xmlns="http://www.w3.org/1999/xhtml"><p>Hello bad and <a href="https://example.org/?a=1&amp;b=2">good</a></p><img src="https://example.org/cat.png" alt="a cat"/>still text<p lang="fr">Bonjour &lt;monde&gt;</p></div>`
			if s(e.ContentXHTML) != want {
				t.Errorf("content_xhtml =\n%s\nwant\n%s", s(e.ContentXHTML), want)
			}
			if s(e.Published) != "2024-02-29T22:59:59Z" || s(e.Updated) != s(e.Published) {
				t.Errorf("published %q updated %q", s(e.Published), s(e.Updated))
			}
			if s(e.Author.JID) != "mallory@evil.example" || !e.Author.JIDVerified || s(e.Author.Email) != "juliet@example.org" {
				t.Errorf("author = %+v", e.Author)
			}
			if e.Language != nil || e.AtomID == nil {
				t.Errorf("language %q atom id %q", s(e.Language), s(e.AtomID))
			}
		}},
		{file: "xhtml.xml", opts: Options{DropXHTML: true}, check: func(t *testing.T, e *Entry, text string) {
			if e.TitleXHTML != nil || e.ContentXHTML != nil {
				t.Error("xhtml kept with DropXHTML")
			}
			if s(e.Title) != "Rich title" {
				t.Errorf("title = %q", s(e.Title))
			}
			if e.Author.JID != nil || e.Author.JIDVerified {
				t.Errorf("author jid without uri nor publisher: %+v", e.Author)
			}
		}},
		{file: "html.xml", check: func(t *testing.T, e *Entry, text string) {
			// Plain text never reads as markup: a word joiner follows each '<'.
			if s(e.Title) != "Escaped <\u2060b>not markup<\u2060/b>" || e.TitleXHTML != nil {
				t.Errorf("title = %q / %q", s(e.Title), s(e.TitleXHTML))
			}
			want := `<div xmlns="http://www.w3.org/1999/xhtml"><p>Hello <b>world</b></p><p>second &amp; last<br/>line</p></div>`
			if s(e.ContentXHTML) != want {
				t.Errorf("content_xhtml =\n%s\nwant\n%s", s(e.ContentXHTML), want)
			}
			if s(e.Content) != "Hello world\nsecond & last\nline" {
				t.Errorf("content = %q", s(e.Content))
			}
			if s(e.Updated) != "2024-01-01T00:00:00Z" || e.Published != nil {
				t.Errorf("updated %q published %q", s(e.Updated), s(e.Published))
			}
		}},
		{file: "prefixed.xml", check: func(t *testing.T, e *Entry, text string) {
			if s(e.Title) != "prefixed" || s(e.Content) != "emph kept text" {
				t.Errorf("title %q content %q", s(e.Title), s(e.Content))
			}
			if s(e.ContentXHTML) != `<div xmlns="http://www.w3.org/1999/xhtml"><em>emph</em> kept text</div>` {
				t.Errorf("content_xhtml %q", s(e.ContentXHTML))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			e, text, err := ParseEntry("item-1", tt.publisher, readSample(t, tt.file), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if e.ID != "item-1" {
				t.Errorf("id = %q", e.ID)
			}
			tt.check(t, e, text)
			checkInvariants(t, e)
		})
	}
}

func TestParseEntryMinimal(t *testing.T) {
	e, text, err := ParseEntry("x", "", []byte(`<entry xmlns="http://www.w3.org/2005/Atom"/>`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(e)
	// Null keys are left out, lists stay ([] when empty), authors only
	// when there are several.
	want := `{"id":"x","author":{"jid_verified":false},"contributors":[],"tags":[],"links":[],"comments":[],"in_reply_to":[],"attachments":[]}`
	if string(raw) != want || text != "" {
		t.Errorf("got %s (text %q)\nwant %s", raw, text, want)
	}
}

// TestParseEntryCompact: the JSON leaves out null keys at every level,
// keeps lists ([] when empty: search tells [] from a missing key), and has
// authors only when there are several (author is the first one, with the
// publisher fallback when it has no URI).
func TestParseEntryCompact(t *testing.T) {
	const (
		ada = `<author><name>Ada</name></author>`
		bob = `<author><name>Bob</name><uri>xmpp:bob@example.org</uri></author>`
	)
	tests := []struct {
		name, authors, want string
	}{
		{"no author", "",
			`{"id":"x","author":{"jid":"pub@example.org","jid_verified":true},"contributors":[],"tags":[],"links":[],"comments":[],"in_reply_to":[],"attachments":[]}`},
		{"one author without uri", ada,
			`{"id":"x","author":{"name":"Ada","jid":"pub@example.org","jid_verified":true},"contributors":[],"tags":[],"links":[],"comments":[],"in_reply_to":[],"attachments":[]}`},
		{"one author", bob,
			`{"id":"x","author":{"name":"Bob","uri":"xmpp:bob@example.org","jid":"bob@example.org","jid_verified":false},"contributors":[],"tags":[],"links":[],"comments":[],"in_reply_to":[],"attachments":[]}`},
		{"several authors", ada + bob,
			`{"id":"x","author":{"name":"Ada","jid":"pub@example.org","jid_verified":true},` +
				`"authors":[{"name":"Ada","jid_verified":false},{"name":"Bob","uri":"xmpp:bob@example.org","jid":"bob@example.org","jid_verified":false}],` +
				`"contributors":[],"tags":[],"links":[],"comments":[],"in_reply_to":[],"attachments":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := `<entry xmlns="http://www.w3.org/2005/Atom">` + tt.authors + `<link href="https://e.org/"/><geoloc xmlns="http://jabber.org/protocol/geoloc"/></entry>`
			e, _, err := ParseEntry("x", "pub@example.org/res", []byte(payload), Options{})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(e)
			// The link and the empty geoloc: no null member either.
			want := strings.Replace(tt.want, `"links":[]`, `"links":[{"rel":"alternate","href":"https://e.org/"}]`, 1)
			want = strings.Replace(want, `"attachments":[]`, `"attachments":[],"geoloc":{}`, 1)
			if string(raw) != want {
				t.Errorf("got  %s\nwant %s", raw, want)
			}
		})
	}
}

func TestParseEntryRejects(t *testing.T) {
	for _, payload := range []string{
		``,
		`   `,
		`<foo xmlns="urn:bar"/>`,
		`<entry/>`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><title>unclosed`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><title></entry>`,
		`not xml at all`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><title>&undefined;</title></entry>`,
	} {
		if _, _, err := ParseEntry("x", "", []byte(payload), Options{}); err == nil {
			t.Errorf("%q: parsed without error", payload)
		} else if strings.HasPrefix(payload, "<foo") && !errors.Is(err, ErrNotEntry) {
			t.Errorf("%q: error %v does not wrap ErrNotEntry", payload, err)
		}
	}
}

func TestParseEntryHostile(t *testing.T) {
	deep := strings.Repeat("<span>", 5000) + "deep" + strings.Repeat("</span>", 5000)
	tests := []string{
		`<entry xmlns="http://www.w3.org/2005/Atom"><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">` + deep + `</div></content></entry>`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><content type="html">` + xmlEscape(strings.Repeat("<b>", 5000)+"deep") + `</content></entry>`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><content type="html">` + xmlEscape(`<a href=" javascript:alert(1)">x</a><a href="JaVaScRiPt:x">y</a><img src="data:text/html,x"><svg><script>x</script></svg><math><mi>z</mi></math>`) + `</content></entry>`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><content type="html">` + xmlEscape("\x01bad\ufffe &#0; &#1;") + `</content></entry>`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><link href="xmpp:?;node=" rel="replies" title="comments"/><link href="xmpp:%zz?;node=%zz" rel="replies" title="comments"/></entry>`,
		`<entry xmlns="http://www.w3.org/2005/Atom"><published>yesterday</published><updated>9999-99-99</updated></entry>`,
	}
	for i, payload := range tests {
		e, _, err := ParseEntry("x", "", []byte(payload), Options{})
		if err != nil {
			t.Errorf("%d: %v", i, err)
			continue
		}
		checkInvariants(t, e)
		if strings.Contains(s(e.ContentXHTML)+s(e.Content), "deep") != (i < 2) {
			t.Errorf("%d: content_xhtml %.200q", i, s(e.ContentXHTML))
		}
		if i == 4 && len(e.Comments) != 0 {
			t.Errorf("bad comment URIs accepted: %+v", e.Comments)
		}
		if i == 5 && (e.Published != nil || e.Updated != nil) {
			t.Errorf("bad dates accepted: %q %q", s(e.Published), s(e.Updated))
		}
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// checkInvariants verifies what any parse must give: JSON that encodes,
// and sanitised XHTML that is well-formed and holds nothing executable.
func checkInvariants(t testing.TB, e *Entry) {
	t.Helper()
	if _, err := json.Marshal(e); err != nil {
		t.Fatalf("entry does not encode: %v", err)
	}
	for _, x := range []*string{e.TitleXHTML, e.ContentXHTML} {
		if x == nil {
			continue
		}
		dec := xml.NewDecoder(strings.NewReader(*x))
		depth := 0
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("sanitised XHTML is not well-formed: %v\n%.500s", err, *x)
			}
			el, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			depth++
			if el.Name.Space != NSXHTML {
				t.Fatalf("element outside XHTML: %v", el.Name)
			}
			if _, ok := PolicyElements[el.Name.Local]; !ok {
				t.Fatalf("element %q kept", el.Name.Local)
			}
			for _, a := range el.Attr {
				if a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				if _, ok := policyAllows(el.Name.Local, a.Name.Local, a.Value); !ok || a.Name.Space != "" {
					t.Fatalf("attribute %q=%q kept on %s", a.Name.Local, a.Value, el.Name.Local)
				}
			}
		}
		if depth > maxDepth+2 {
			t.Fatalf("depth %d kept", depth)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"xep0277.xml", "xhtml.xml", "html.xml", "prefixed.xml"} {
		f.Add(readSample(f, name), "romeo@montague.lit/x")
	}
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.xml"))
	for _, name := range golden {
		f.Add(readSample(f, filepath.Join("golden", filepath.Base(name))), "romeo@montague.lit")
	}
	f.Add([]byte(`<entry xmlns="http://www.w3.org/2005/Atom"/>`), "")
	f.Add([]byte(`<entry xmlns="http://www.w3.org/2005/Atom"><content type="html">&lt;a href=&quot;javascript:x&quot;&gt;</content></entry>`), "")
	f.Fuzz(func(t *testing.T, payload []byte, publisher string) {
		for _, drop := range []bool{false, true} {
			e, text, err := ParseEntry("id", publisher, payload, Options{DropXHTML: drop})
			if err != nil {
				continue
			}
			checkInvariants(t, e)
			if drop && (e.TitleXHTML != nil || e.ContentXHTML != nil) {
				t.Fatal("xhtml kept with DropXHTML")
			}
			_ = text
		}
	})
}

func BenchmarkParseEntry(b *testing.B) {
	payload := readSample(b, "xhtml.xml")
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, _, err := ParseEntry("1", "romeo@montague.lit", payload, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// The attachments node of an item is XEP-0470's: its §4.1 example.
func TestAttachmentsNodeName(t *testing.T) {
	got := AttachmentsPrefix + ItemURI("juliet@capulet.lit", "urn:xmpp:microblog:0", "balcony-restoration-afd1")
	if want := "urn:xmpp:pubsub-attachments:1/xmpp:juliet@capulet.lit?;node=urn%3Axmpp%3Amicroblog%3A0;item=balcony-restoration-afd1"; got != want {
		t.Errorf("attachments node %q, want %q", got, want)
	}
}
