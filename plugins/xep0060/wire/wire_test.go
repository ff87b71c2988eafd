package wire

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gosrc.io/xmpp/stanza"
)

const prosodyItems = `<items node='urn:xmpp:microblog:0'><item xmlns='http://jabber.org/protocol/pubsub' id='a1' publisher='alice@localhost'><entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>Caf&#233; &amp; &lt;b&gt;</title><x:ext xmlns:x='urn:x' x:attr='1'/></entry></item><item id="a2"/><item id='a3'>
  <note xmlns='urn:n'>two
 lines</note>
</item></items><set xmlns='http://jabber.org/protocol/rsm'><first index='4'>c-1</first><last>c-3</last><count>10</count></set>`

func TestParseItemsExactBytes(t *testing.T) {
	r, err := ParseItems([]byte(prosodyItems))
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != "urn:xmpp:microblog:0" || len(r.Items) != 3 {
		t.Fatalf("reply = %+v", r)
	}
	want := []Item{
		{ID: "a1", Publisher: "alice@localhost", Payload: []byte(`<entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>Caf&#233; &amp; &lt;b&gt;</title><x:ext xmlns:x='urn:x' x:attr='1'/></entry>`)},
		{ID: "a2", Payload: []byte{}},
		{ID: "a3", Payload: []byte("\n  <note xmlns='urn:n'>two\n lines</note>\n")},
	}
	for i, w := range want {
		g := r.Items[i]
		if g.ID != w.ID || g.Publisher != w.Publisher || !bytes.Equal(g.Payload, w.Payload) {
			t.Errorf("item %d = %q %q %q, want %q %q %q", i, g.ID, g.Publisher, g.Payload, w.ID, w.Publisher, w.Payload)
		}
	}
	if r.RSM == nil || *r.RSM.Count != 10 || *r.RSM.FirstIndex != 4 || r.RSM.First != "c-1" || r.RSM.Last != "c-3" {
		t.Errorf("rsm = %+v", r.RSM)
	}
}

func TestParseItemsWithoutRSM(t *testing.T) {
	r, err := ParseItems([]byte(`<items node='n'/>`))
	if err != nil {
		t.Fatal(err)
	}
	if r.RSM != nil || len(r.Items) != 0 || r.Items == nil {
		t.Errorf("reply = %+v", r)
	}
	for _, bad := range []string{``, `<items node='n'><item id='x'>`, `<set xmlns='http://jabber.org/protocol/rsm'><count>-1</count></set><items/>`, `<items><item id='1'><a></b></item></items>`} {
		if _, err := ParseItems([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// The same payload arrives identical through an IQ result and a
// notification; the wrappers differ, the canonical form does not.
func TestWrapCanonical(t *testing.T) {
	iq := `<items node='n'><item xmlns='http://jabber.org/protocol/pubsub' id='x&apos;1' publisher='a&amp;b@h'><p xmlns='urn:p'>hi</p></item></items>`
	ev := `<items node='n'><item id="x'1" publisher="a&amp;b@h"><p xmlns='urn:p'>hi</p></item></items>`
	r1, err := ParseItems([]byte(iq))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := ParseEvent([]byte(ev))
	if err != nil {
		t.Fatal(err)
	}
	a, b := Wrap(r1.Items[0]), Wrap(ns[0].Items[0].Item)
	want := `<item id='x&apos;1' publisher='a&amp;b@h'><p xmlns='urn:p'>hi</p></item>`
	if a != want || b != want {
		t.Errorf("wrap = %q / %q, want %q", a, b, want)
	}
	if got := Wrap(Item{ID: "<&>"}); got != `<item id='&lt;&amp;>'></item>` {
		t.Errorf("wrap without publisher = %q", got)
	}
}

func TestParseEvent(t *testing.T) {
	cases := []struct {
		in    string
		check func(t *testing.T, ns []Notification)
	}{
		{`<items node='n'><item id='1'><p xmlns='urn:p'/></item><item id='2'/><retract id='3'/><retract id='4'/></items>`, func(t *testing.T, ns []Notification) {
			n := ns[0]
			if n.Kind != EventItems || n.Node != "n" || len(n.Items) != 2 || n.Items[0].HeaderOnly || !n.Items[1].HeaderOnly || strings.Join(n.Retracted, ",") != "3,4" {
				t.Errorf("items = %+v", n)
			}
		}},
		{`<purge node='p'/>`, func(t *testing.T, ns []Notification) {
			if ns[0].Kind != EventPurge || ns[0].Node != "p" {
				t.Errorf("%+v", ns)
			}
		}},
		{`<delete node='d'><redirect uri='xmpp:s?;node=o'/></delete>`, func(t *testing.T, ns []Notification) {
			if ns[0].Kind != EventDelete || ns[0].Redirect != "xmpp:s?;node=o" {
				t.Errorf("%+v", ns)
			}
		}},
		{`<configuration node='c'><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#max_items'><value>10</value></field></x></configuration>`, func(t *testing.T, ns []Notification) {
			if ns[0].Kind != EventConfiguration || len(ns[0].Config) != 2 || ns[0].Config[1].Values[0] != "10" {
				t.Errorf("%+v", ns)
			}
		}},
		{`<subscription node='s' jid='a@h' subscription='subscribed' subid='x'/>`, func(t *testing.T, ns []Notification) {
			if ns[0].Kind != EventSubscription || ns[0].Subscription.JID != "a@h" || ns[0].Subscription.Subscription != "subscribed" {
				t.Errorf("%+v", ns)
			}
		}},
		{`<collection node='x'><node id='y'/></collection>`, func(t *testing.T, ns []Notification) {
			if len(ns) != 0 {
				t.Errorf("unknown kinds must be skipped: %+v", ns)
			}
		}},
	}
	for _, c := range cases {
		ns, err := ParseEvent([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		c.check(t, ns)
	}
}

func TestOtherReplies(t *testing.T) {
	node, id, err := ParsePublish([]byte(`<publish node='n'><item id='gen-1'/></publish>`))
	if err != nil || node != "n" || id != "gen-1" {
		t.Errorf("publish: %q %q %v", node, id, err)
	}
	subs, err := ParseSubscriptions([]byte(`<subscriptions><subscription node='a' jid='j@h' subscription='subscribed' subid='1'/><subscription node='b' jid='j@h' subscription='pending'/></subscriptions>`))
	if err != nil || len(subs) != 2 || subs[1].Subscription != "pending" || subs[0].SubID != "1" {
		t.Errorf("subscriptions: %+v %v", subs, err)
	}
	subs, err = ParseSubscriptions([]byte(`<subscription node='a' jid='j@h' subscription='subscribed'/>`))
	if err != nil || len(subs) != 1 {
		t.Errorf("subscribe reply: %+v %v", subs, err)
	}
	node, fields, err := ParseConfigure([]byte(`<configure node='n'><x xmlns='jabber:x:data' type='form'><field var='pubsub#max_items' type='text-single' label='Max'><value>max</value></field></x></configure>`))
	if err != nil || node != "n" || len(fields) != 1 || fields[0].Values[0] != "max" || fields[0].Label != "Max" {
		t.Errorf("configure: %q %+v %v", node, fields, err)
	}
	// The service's default configuration (ejabberd's PEP form, cut).
	fields, err = ParseDefault([]byte(`<default><x type='form' xmlns='jabber:x:data'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#notify_retract' type='boolean'><value>0</value></field></x></default>`))
	if err != nil || len(fields) != 2 || fields[1].Var != "pubsub#notify_retract" || fields[1].Values[0] != "0" {
		t.Errorf("default: %+v %v", fields, err)
	}
	if fields, err := ParseDefault([]byte(`<configure node='n'><x xmlns='jabber:x:data'><field var='a'/></x></configure>`)); err != nil || len(fields) != 0 {
		t.Errorf("default from a configure element: %+v %v", fields, err)
	}
}

// Every request builder must produce well-formed XML whatever the input.
func TestBuildersEscape(t *testing.T) {
	hostile := `a'b"<c>&d`
	after, before, max, idx := hostile, "", 5, 2
	for _, s := range []string{
		ItemsQuery{Node: hostile, MaxItems: 3, IDs: []string{hostile, "x"}, SubID: hostile, OrderBy: "creation", RSM: &RSMQuery{Max: &max, After: &after, Before: &before, Index: &idx}}.XML(),
		Publish(hostile, hostile, []byte(" <p xmlns='urn:p'>x</p>\n"), map[string][]string{"pubsub#max_items": {"max"}, hostile: {hostile}}),
		Retract(hostile, hostile, true), Subscribe(hostile, hostile), Unsubscribe(hostile, hostile, hostile), Subscriptions(hostile), Subscriptions(""),
		Create(hostile, map[string][]string{"pubsub#access_model": {"open"}}), Delete(hostile), Purge(hostile), ConfigureGet(hostile), DefaultGet(),
		ConfigureSet(hostile, map[string][]string{"pubsub#max_items": {"10"}}),
	} {
		if err := CheckPayload([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	q := ItemsQuery{Node: "n", RSM: &RSMQuery{Before: &before}}.XML()
	if !strings.Contains(q, "<before/>") {
		t.Errorf("last-page request = %s", q)
	}
}

func TestCheckPayload(t *testing.T) {
	for _, ok := range []string{`<a/>`, " \n<a xmlns='x'><b>t</b></a>\n"} {
		if err := CheckPayload([]byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{``, `text`, `<a/><b/>`, `<a>`, `<a></b>`, `x<a/>`, `<?xml version='1.0'?><a/>`, `<!DOCTYPE a><a/>`} {
		if err := CheckPayload([]byte(bad)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}

// Register makes gosrc.io/xmpp decode pubsub payloads into the raw types.
func TestRegisterRawCapture(t *testing.T) {
	Register()
	raw := `<iq xmlns='jabber:client' type='result' id='1' from='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` + prosodyItems + `</pubsub></iq>`
	var iq stanza.IQ
	if err := xml.Unmarshal([]byte(raw), &iq); err != nil {
		t.Fatal(err)
	}
	ps, ok := iq.Payload.(*PubSub)
	if !ok {
		t.Fatalf("payload type %T", iq.Payload)
	}
	if string(ps.Inner) != prosodyItems {
		t.Errorf("inner differs from the wire:\n%s\n%s", ps.Inner, prosodyItems)
	}
	msg := `<message xmlns='jabber:client' from='pubsub.localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='1'><p xmlns='urn:p'/></item></items></event></message>`
	var m stanza.Message
	if err := xml.Unmarshal([]byte(msg), &m); err != nil {
		t.Fatal(err)
	}
	var ev *Event
	for _, e := range m.Extensions {
		if x, ok := e.(*Event); ok {
			ev = x
		}
	}
	if ev == nil || !strings.Contains(string(ev.Inner), "<p xmlns='urn:p'/>") {
		t.Fatalf("event not captured raw: %#v", m.Extensions)
	}
}

func FuzzParseItems(f *testing.F) {
	f.Add([]byte(prosodyItems))
	f.Add([]byte(`<items node='n'><item id='1'><a>&amp;</a></item></items>`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseItems(in)
		if err != nil {
			return
		}
		// Round trip: the canonical wrapper of each item parses back to the
		// same id, publisher and payload bytes.
		var b strings.Builder
		b.WriteString("<items node='n'>")
		for _, it := range r.Items {
			b.WriteString(Wrap(it))
		}
		b.WriteString("</items>")
		r2, err := ParseItems([]byte(b.String()))
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, b.String())
		}
		for i := range r.Items {
			if r.Items[i].ID != r2.Items[i].ID || r.Items[i].Publisher != r2.Items[i].Publisher || !bytes.Equal(r.Items[i].Payload, r2.Items[i].Payload) {
				t.Fatalf("round trip changed item %d: %+v → %+v", i, r.Items[i], r2.Items[i])
			}
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`<items node='n'><item id='1'><p xmlns='urn:p'/></item><retract id='3'/></items><purge node='p'/>`))
	f.Add([]byte(`<configuration node='c'><x xmlns='jabber:x:data'><field var='a'><value>1</value></field></x></configuration>`))
	f.Add([]byte(`<default><x xmlns='jabber:x:data'><field var='pubsub#notify_retract'><value>0</value></field></x></default>`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ParseEvent(in)
		ParseSubscriptions(in)
		ParseConfigure(in)
		ParseDefault(in)
		ParsePublish(in)
		CheckPayload(in)
	})
}

// TestParseItemsEjabberdNegativeIndex keeps the index ejabberd 23.01 sends
// for a max_items larger than the node (count - max_items).
func TestParseItemsEjabberdNegativeIndex(t *testing.T) {
	for _, tc := range []struct {
		set     string
		index   int
		wantErr bool
	}{
		{`<first index='-6'>c</first><count>4</count>`, -6, false},
		{`<first index=' 2 '>c</first>`, 2, false},
		{`<first index='x'>c</first>`, 0, true},
	} {
		r, err := ParseItems([]byte(`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'>` + tc.set + `</set>`))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v", tc.set, err)
			continue
		}
		if err == nil && (r.RSM.FirstIndex == nil || *r.RSM.FirstIndex != tc.index) {
			t.Errorf("%s: index = %v", tc.set, r.RSM.FirstIndex)
		}
	}
}

// nested is an element nested depth deep, in the shapes a hostile publisher
// can send: odd prefixes, CDATA, many attributes.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString("<deep xmlns='urn:test:deep' xmlns:odd-prefix_1.x='urn:odd'>")
	for i := 1; i < depth; i++ {
		b.WriteString("<odd-prefix_1.x:d>")
	}
	b.WriteString("<![CDATA[<not-a-tag> & ]]>")
	for i := 1; i < depth; i++ {
		b.WriteString("</odd-prefix_1.x:d>")
	}
	b.WriteString("</deep>")
	return b.String()
}

// TestItemPayloadsHaveNoDepthLimit: an item nested far deeper than what the
// daemon interprets itself is captured byte for byte, through an IQ result
// and a notification, decoded by gosrc.io/xmpp like a session does; the
// interpreted parts keep their limit.
func TestItemPayloadsHaveNoDepthLimit(t *testing.T) {
	Register()
	for _, depth := range []int{maxDepth + 44, 5000, 20000} {
		payload := nested(depth)
		items := `<items node='n'><item id='ok'><p xmlns='urn:p'/></item><item id='deep'>` + payload + `</item></items>`
		iqXML := `<iq xmlns='jabber:client' type='result' id='1' from='pubsub.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` + items + `</pubsub></iq>`
		p, err := stanza.NextPacket(xml.NewDecoder(strings.NewReader(iqXML)))
		if err != nil {
			t.Fatalf("depth %d: stanza decode: %v", depth, err)
		}
		iq := p.(*stanza.IQ)
		r, err := ParseItems(iq.Payload.(*PubSub).Inner)
		if err != nil {
			t.Fatalf("depth %d: ParseItems: %v", depth, err)
		}
		if len(r.Items) != 2 || string(r.Items[1].Payload) != payload || r.Items[0].ID != "ok" {
			t.Fatalf("depth %d: items not carried exactly (%d items)", depth, len(r.Items))
		}
		msgXML := `<message xmlns='jabber:client' from='pubsub.localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'>` + items + `</event></message>`
		p, err = stanza.NextPacket(xml.NewDecoder(strings.NewReader(msgXML)))
		if err != nil {
			t.Fatalf("depth %d: message decode: %v", depth, err)
		}
		var ev *Event
		for _, e := range p.(stanza.Message).Extensions {
			if x, ok := e.(*Event); ok {
				ev = x
			}
		}
		ns, err := ParseEvent(ev.Inner)
		if err != nil {
			t.Fatalf("depth %d: ParseEvent: %v", depth, err)
		}
		if len(ns) != 1 || len(ns[0].Items) != 2 || string(ns[0].Items[1].Payload) != payload || ns[0].Items[1].HeaderOnly {
			t.Fatalf("depth %d: notification not carried exactly", depth)
		}
	}
	// What the daemon interprets stays bounded: a form, a subscription list,
	// an RSM set, the elements around the items.
	deep := nested(maxDepth + 1)
	for name, bad := range map[string]func() error{
		"form": func() error {
			_, _, err := ParseConfigure([]byte(`<configure node='n'><x xmlns='jabber:x:data'><field var='a'><value>` + deep + `</value></field></x></configure>`))
			return err
		},
		"rsm": func() error {
			_, err := ParseItems([]byte(`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><first>` + deep + `</first></set>`))
			return err
		},
		"around the items": func() error {
			_, err := ParseItems([]byte(`<items node='n'><other>` + deep + `</other></items>`))
			return err
		},
		"subscriptions": func() error {
			_, err := ParseSubscriptions([]byte(`<subscriptions><subscription node='n'>` + deep + `</subscription></subscriptions>`))
			return err
		},
	} {
		if err := bad(); !errors.Is(err, errTooDeep) {
			t.Errorf("%s nested %d deep: err = %v, want %v", name, maxDepth+1, err, errTooDeep)
		}
	}
}

// TestItemPayloadShapes: a large item, thousands of attributes, odd
// prefixes and CDATA are carried as sent.
func TestItemPayloadShapes(t *testing.T) {
	var attrs strings.Builder
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&attrs, " a%d='%d'", i, i)
	}
	for name, payload := range map[string]string{
		"1 MiB":      "<big xmlns='urn:big'>" + strings.Repeat("x", 1<<20) + "</big>",
		"attributes": "<many xmlns='urn:many'" + attrs.String() + "/>",
		"prefixes":   "<a:b xmlns:a='urn:a' xmlns:Z9._-x='urn:z'><Z9._-x:c Z9._-x:attr='v'/></a:b>",
		"cdata":      "<c xmlns='urn:c'><![CDATA[</item></items>]]>&lt;</c>",
	} {
		r, err := ParseItems([]byte(`<items node='n'><item id='x'>` + payload + `</item></items>`))
		if err != nil || len(r.Items) != 1 || string(r.Items[0].Payload) != payload {
			t.Errorf("%s: %v", name, err)
		}
	}
}
