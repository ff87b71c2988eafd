package xsstest

import (
	"encoding/base64"
	"encoding/xml"
	"strings"
)

// Vector is one hostile item.
type Vector struct {
	// Name says what it tries.
	Name string
	// Analyser, Parser and Node are how the daemon would ask for it.
	Analyser, Parser, Node string
	// Payload is the item's payload.
	Payload string
	// Keep are strings the parsed JSON must still hold (what is legitimate
	// in the vector survives: the check is not passed by dropping all).
	Keep []string
}

const (
	nsAtom  = "http://www.w3.org/2005/Atom"
	nsXHTML = "http://www.w3.org/1999/xhtml"
)

// htmlVectors are HTML fragments, each tried as escaped HTML content; the
// well-formed ones (xml true) as XHTML content too.
var htmlVectors = []struct {
	name, html string
	xml        bool
	keep       []string
}{
	{"script element", `<script>alert(1)</script>`, true, nil},
	{"script src upper case", `<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>`, false, nil},
	{"img onerror", `<img src=x onerror=alert(1)>`, false, nil},
	{"img javascript: src", `<IMG SRC="javascript:alert('XSS');">`, false, nil},
	{"img javascript: mixed case", `<IMG SRC=JaVaScRiPt:alert('XSS')>`, false, nil},
	{"decimal entities", `<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>`, false, nil},
	{"padded decimal entities", `<IMG SRC=&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097>`, false, nil},
	{"hex entities", `<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74>`, false, nil},
	{"tab entity in scheme", `<a href="jav&#x09;ascript:alert(1)">tab</a>`, true, []string{"tab"}},
	{"newline entity in scheme", `<a href="jav&#x0A;ascript:alert(1)">newline</a>`, true, []string{"newline"}},
	{"carriage return entity in scheme", `<a href="jav&#x0D;ascript:alert(1)">cr</a>`, true, nil},
	{"leading control and spaces", `<a href=" &#14;  javascript:alert(1)">ctl</a>`, false, nil},
	{"leading spaces", `<a href="   javascript:alert(1)">sp</a>`, true, nil},
	{"colon entity", `<a href="javascript&colon;alert(1)">colon</a>`, false, nil},
	{"hex entity first letter", `<a href="&#x6A;avascript:alert(1)">hex</a>`, true, nil},
	{"hex colon entity", `<a href="JAVASCRIPT&#x3A;alert(1)">hexcolon</a>`, true, nil},
	{"vbscript", `<a href="vbscript:msgbox(1)">vb</a>`, true, nil},
	{"data html link", `<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>`, true, nil},
	{"data svg image", `<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+" alt="svg"/>`, true, nil},
	{"data png image kept", `<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot"/>`, true, []string{"data:image/png;base64,iVBORw0KGgo="}},
	{"event handlers on a good link", `<a href="https://example.org/ok" onclick="alert(1)" ONMOUSEOVER="alert(2)">ok</a>`, true, []string{"https://example.org/ok"}},
	{"body onload", `<body onload=alert(1)>b</body>`, false, nil},
	{"style expression", `<div style="width: expression(alert(1))">e</div>`, true, []string{">e<"}},
	{"style url javascript", `<div style="background:url(javascript:alert(1))">u</div>`, true, nil},
	{"style url with control entity", `<div style="background-image: url(&#1;javascript:alert(1))">u2</div>`, false, nil},
	{"style behavior and binding", `<span style="color: red; behavior: url(x.htc); -moz-binding: url(http://x.example/xss.xml#xss)">b</span>`, true, []string{"color: red"}},
	{"style escapes", `<span style="color: \72\65\64; background: u\72l(javascript:alert(1))">esc</span>`, true, nil},
	{"style overlay", `<a href="https://example.org/x" style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</a>`, true, []string{"https://example.org/x"}},
	{"style element import", `<style>@import 'http://x.example/xss.css'; body{background:url("javascript:alert(1)")}</style>`, true, nil},
	{"svg onload", `<svg onload=alert(1)>`, false, nil},
	{"svg script", `<svg><script>alert(1)</script></svg>`, true, nil},
	{"svg xlink href", `<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">XSS</text></a></svg>`, false, nil},
	{"svg animate", `<svg><animate onbegin=alert(1) attributeName=x dur=1s>`, false, nil},
	{"svg set href", `<svg><set attributeName="href" to="javascript:alert(1)"/></svg>`, false, nil},
	{"mathml maction", `<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">CLICK</maction></math>`, false, nil},
	{"mxss math style", `<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>`, false, nil},
	{"mxss svg style", `<svg></p><style><a id="</style><img src=1 onerror=alert(1)>">`, false, nil},
	{"mxss noscript title", `<noscript><p title="</noscript><img src=x onerror=alert(1)>">`, false, nil},
	{"base javascript", `<base href="javascript:alert(1)//">`, false, nil},
	{"base elsewhere", `<base href="https://evil.example/"/><a href="https://example.org/kept">k</a>`, true, []string{"https://example.org/kept"}},
	{"form action", `<form action="javascript:alert(1)"><input type="submit"/></form>`, true, nil},
	{"button formaction", `<form><button formaction="javascript:alert(1)">x</button></form>`, true, nil},
	{"input autofocus", `<input onfocus=alert(1) autofocus>`, false, nil},
	{"iframe javascript", `<iframe src="javascript:alert(1)"></iframe>`, true, nil},
	{"iframe srcdoc", `<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>`, true, nil},
	{"meta refresh javascript", `<meta http-equiv="refresh" content="0;url=javascript:alert(1)"/>`, true, nil},
	{"meta refresh data", `<meta http-equiv="refresh" content="0; url=data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;"/>`, true, nil},
	{"object data", `<object data="javascript:alert(1)"></object>`, true, nil},
	{"embed src", `<embed src="javascript:alert(1)"/>`, true, nil},
	{"link stylesheet", `<link rel="stylesheet" href="javascript:alert(1)"/>`, true, nil},
	{"table background", `<table background="javascript:alert(1)"><tr><td>t</td></tr></table>`, false, []string{"<td>t</td>"}},
	{"target and rel", `<a href="https://example.org/" target="_blank" rel="opener">t</a>`, true, []string{"https://example.org/"}},
	{"quote breakout in alt", `<img src="https://example.org/x.png" alt='"><script>alert(1)</script>'/>`, false, []string{"https://example.org/x.png"}},
	{"unbalanced quotes", `<IMG """><SCRIPT>alert("XSS")</SCRIPT>">`, false, nil},
	{"nested angle brackets", `<<SCRIPT>alert("XSS");//<</SCRIPT>`, false, nil},
	{"comment", `<!--<script>alert(1)</script>--><p>after</p>`, true, []string{"after"}},
	{"conditional comment", `<!--[if IE]><script>alert(1)</script><![endif]-->`, false, nil},
	{"cdata", `<![CDATA[<script>alert(1)</script>]]>`, false, nil},
	{"xmp", `<xmp><img src=x onerror=alert(1)></xmp>`, false, nil},
	{"textarea", `<textarea><script>alert(1)</script></textarea>`, true, nil},
	{"class spoofing", `<p class="modal-backdrop hidden">spoof</p>`, true, []string{"spoof"}},
	{"srcset", `<img srcset="javascript:alert(1) 1x" src="https://example.org/ok.png" alt="s"/>`, true, []string{"https://example.org/ok.png"}},
	{"video poster", `<video poster="javascript:alert(1)"><source src="javascript:alert(1)"/></video>`, true, nil},
	{"details ontoggle", `<details open="" ontoggle="alert(1)">d</details>`, true, nil},
	{"marquee onstart", `<marquee onstart="alert(1)">m</marquee>`, true, nil},
	{"xmpp link kept", `<a href="xmpp:romeo@montague.lit?message">xmpp</a>`, true, []string{"xmpp:romeo@montague.lit?message"}},
	{"blockquote cite", `<blockquote cite="javascript:alert(1)">q</blockquote>`, true, nil},
}

// xhtmlOnly are XHTML fragments that HTML cannot express.
var xhtmlOnly = []struct{ name, xhtml string }{
	{"prefixed xhtml script", `<x:script xmlns:x="` + nsXHTML + `">alert(1)</x:script>`},
	{"xhtml-namespaced attributes", `<a xmlns:h="` + nsXHTML + `" h:href="javascript:alert(1)" h:onclick="alert(1)">nsattr</a>`},
	{"svg namespace", `<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(1)</script></svg>`},
	{"xlink href", `<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:alert(1)">xl</a>`},
	{"xml:base", `<p xml:base="javascript:alert(1)//"><a href="x">rel</a></p>`},
	{"img tab entity", `<img src="java&#x09;script:alert(1)" onerror="alert(1)"/>`},
	{"foreign element with xhtml inside", `<evil xmlns="urn:evil"><script xmlns="` + nsXHTML + `">alert(1)</script></evil>`},
}

// atomVectors attack the Atom fields that become URLs or text.
var atomVectors = []struct {
	name, inner string
	keep        []string
}{
	{"links", `<link href="javascript:alert(1)"/><link href=" JaVaScRiPt:alert(1)" rel="alternate"/>` +
		`<link rel="enclosure" href="data:text/html;base64,PHNjcmlwdD4=" type="text/html"/><link rel="related" href="vbscript:x"/>` +
		`<link rel="replies" title="comments" href="javascript:alert(1)//?;node=x"/><link rel="via" href="java&#x09;script:alert(1)"/>` +
		`<link rel="alternate" href="/relative"/><link href="https://example.org/good" title="&lt;script&gt;alert(1)&lt;/script&gt;"/>`,
		[]string{"https://example.org/good"}},
	{"persons", `<author><name>&lt;script&gt;alert(1)&lt;/script&gt;</name><uri>javascript:alert(1)</uri><email>&lt;img src=x onerror=alert(1)&gt;</email></author>` +
		`<contributor><name>c</name><uri>data:text/html,x</uri></contributor>`, nil},
	{"plain text markup", `<title>&lt;img src=x onerror=alert(1)&gt;</title><content>&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;</content>` +
		`<category term="&lt;script&gt;alert(1)&lt;/script&gt;"/><id>&lt;svg onload=alert(1)&gt;</id>`, nil},
	{"content src", `<title>t</title><content src="javascript:alert(1)" type="text/html"/>`, nil},
	{"in-reply-to", `<thr:in-reply-to xmlns:thr="http://purl.org/syndication/thread/1.0" ref="&lt;script&gt;" href="javascript:alert(1)"/>`, nil},
	{"geoloc", `<geoloc xmlns="http://jabber.org/protocol/geoloc"><uri>javascript:alert(1)</uri><text>&lt;script&gt;alert(1)&lt;/script&gt;</text></geoloc>`, nil},
	{"rich title, summary, rights", `<title type="xhtml"><div xmlns="` + nsXHTML + `"><a href="javascript:alert(1)">t</a><script>alert(1)</script></div></title>` +
		`<summary type="html">&lt;img src=x onerror=alert(1)&gt;</summary><rights type="html">&lt;iframe src=javascript:alert(1)&gt;&lt;/iframe&gt;</rights>`, nil},
	{"base64 text content", `<content type="application/json">` + base64.StdEncoding.EncodeToString([]byte(`{"x":"<script>alert(1)</script>"}`)) + `</content>`, nil},
	{"markup in a URL", `<link href="https://example.org/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"/>`, []string{"https://example.org/%22%3E%3Cscript%3E"}},
}

// pepVectors attack the PEP parsers.
var pepVectors = []Vector{
	{Name: "bookmark", Analyser: "xep-0402", Parser: "bookmarks", Node: "urn:xmpp:bookmarks:1",
		Payload: `<conference xmlns="urn:xmpp:bookmarks:1" name="&lt;img src=x onerror=alert(1)&gt;" autojoin="true"><nick>&lt;script&gt;alert(1)&lt;/script&gt;</nick>` +
			`<password>&lt;/password&gt;</password><extensions><x xmlns="urn:x:&lt;script&gt;"/></extensions></conference>`},
	{Name: "nickname", Analyser: "xep-0172", Parser: "nickname", Node: "http://jabber.org/protocol/nick",
		Payload: `<nick xmlns="http://jabber.org/protocol/nick">&lt;svg onload=alert(1)&gt;</nick>`},
	{Name: "avatar metadata", Analyser: "xep-0084", Parser: "avatar-metadata", Node: "urn:xmpp:avatar:metadata",
		Payload: `<metadata xmlns="urn:xmpp:avatar:metadata"><info id="x" bytes="1" type="image/png" url="javascript:alert(1)"/>` +
			`<info id="y" bytes="1" type="image/svg+xml" url="data:image/svg+xml;base64,PHN2Zz4="/>` +
			`<info id="z" bytes="2" type="&lt;script&gt;" url="https://ok.example/a.png"/></metadata>`,
		Keep: []string{"https://ok.example/a.png"}},
	{Name: "vcard4", Analyser: "xep-0292", Parser: "vcard4", Node: "urn:xmpp:vcard4",
		Payload: `<vcard xmlns="urn:ietf:params:xml:ns:vcard-4.0"><fn><text>&lt;script&gt;alert(1)&lt;/script&gt;</text></fn>` +
			`<photo><uri>javascript:alert(1)</uri></photo><photo><uri>data:image/svg+xml;base64,PHN2Zz4=</uri></photo>` +
			`<photo><uri>data:image/png;base64,iVBORw0KGgo=</uri></photo><url><uri>vbscript:x</uri></url>` +
			`<impp><uri>JaVaScRiPt:alert(1)</uri></impp><tel><uri>javascript:alert(1)</uri></tel><geo><uri>java&#x09;script:alert(1)</uri></geo>` +
			`<note><text>&lt;img src=x onerror=alert(1)&gt;</text></note><email><text>&lt;a href=javascript:x&gt;</text></email></vcard>`,
		Keep: []string{"data:image/png;base64,iVBORw0KGgo="}},
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Vectors returns the corpus: every HTML vector as html content (and, when
// well-formed, as xhtml content and title), the XHTML-only ones, the Atom
// field vectors (for posts and for comments), and the PEP ones.
func Vectors() []Vector {
	post := func(name, inner string, keep []string) []Vector {
		payload := `<entry xmlns="` + nsAtom + `">` + inner + `<updated>2026-01-01T00:00:00Z</updated></entry>`
		return []Vector{
			{Name: name, Analyser: "xep-0277", Parser: "microblog", Node: "urn:xmpp:microblog:0", Payload: payload, Keep: keep},
			{Name: name + " (comment)", Analyser: "xep-0277-comments", Parser: "microblog-comments",
				Node: "urn:xmpp:microblog:0:comments/xss", Payload: payload, Keep: keep},
		}
	}
	var out []Vector
	for _, v := range htmlVectors {
		out = append(out, post("html content: "+v.name, `<title>t</title><content type="html">`+escape(v.html)+`</content>`, v.keep)...)
		if v.xml {
			div := `<div xmlns="` + nsXHTML + `">` + v.html + `</div>`
			out = append(out, post("xhtml content: "+v.name, `<title>t</title><content type="xhtml">`+div+`</content>`, v.keep)...)
			out = append(out, post("xhtml title: "+v.name, `<title type="xhtml">`+div+`</title>`, v.keep)...)
		}
	}
	for _, v := range xhtmlOnly {
		out = append(out, post("xhtml: "+v.name, `<title>t</title><content type="xhtml"><div xmlns="`+nsXHTML+`">`+v.xhtml+`</div></content>`, nil)...)
	}
	for _, v := range atomVectors {
		out = append(out, post("atom: "+v.name, v.inner, v.keep)...)
	}
	return append(out, pepVectors...)
}
