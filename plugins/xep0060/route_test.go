package xep0060

import (
	"context"
	"encoding/xml"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/core/connections"
	"example.org/backend/core/eventjson"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// decodeMessage decodes a message the way a session does (stanza registry
// with the raw pubsub types).
func decodeMessage(t *testing.T, raw string) *stanza.Message {
	t.Helper()
	wire.Register()
	d := xml.NewDecoder(strings.NewReader(raw))
	p, err := stanza.NextPacket(d)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := p.(stanza.Message)
	if !ok {
		t.Fatalf("decoded %T", p)
	}
	return &m
}

// TestRouteSynthetic routes every notification kind, several retracts in
// one event, several kinds in one message, and ignores other messages, in
// arrival order, through the bus observer the plugin binds.
func TestRouteSynthetic(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := core.NewHost(log, "test")
	p := New()
	if err := p.Init(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, err := h.Bus.Attach(ImportName, p.Bindings()...); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if _, err := h.Bus.Attach("rec", rec.bindings()...); err != nil {
		t.Fatal(err)
	}
	events := h.Events.Subscribe("")
	defer events.Close()
	const ev = `<message xmlns='jabber:client' from='pubsub.example' to='a@example/r' id='%s'><event xmlns='http://jabber.org/protocol/pubsub#event'>%s</event></message>`
	msgs := []string{
		`<items node='n'><item id='1' publisher='p@example'><x xmlns='urn:x'>one &amp; <y/></x></item><retract id='r1'/><retract id='r2'/></items>`,
		`<purge node='n'/>`,
		`<delete node='n'><redirect uri='xmpp:pubsub.example?;node=m'/></delete>`,
		`<configuration node='n'><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#title'><value>T</value></field></x></configuration>`,
		`<subscription node='n' jid='a@example' subid='s1' subscription='subscribed'/>`,
	}
	for i, m := range msgs {
		raw := strings.Replace(strings.Replace(ev, "%s", string(rune('a'+i)), 1), "%s", m, 1)
		triggers.Notify(context.Background(), h.Bus, connections.MessageReceived, connections.Incoming{Profile: "a", Message: decodeMessage(t, raw)})
	}
	// Not pubsub, and an error message: ignored.
	triggers.Notify(context.Background(), h.Bus, connections.MessageReceived, connections.Incoming{Profile: "a",
		Message: decodeMessage(t, `<message xmlns='jabber:client' from='b@example'><body>hi</body></message>`)})

	sub := wait(t, rec, "subscription", func(e *SubscriptionEvent) bool { return true })
	if sub.Service != "pubsub.example" || sub.Subscription != (wire.Subscription{Node: "n", JID: "a@example", SubID: "s1", Subscription: "subscribed"}) {
		t.Errorf("subscription = %+v", sub)
	}
	rec.mu.Lock()
	var kinds []string
	for _, e := range rec.events {
		switch v := e.(type) {
		case *ItemsEvent:
			if len(v.Items) != 1 || string(v.Items[0].Payload) != "<x xmlns='urn:x'>one &amp; <y/></x>" || v.Items[0].Publisher != "p@example" ||
				!slices.Equal(v.Retracted, []string{"r1", "r2"}) {
				t.Errorf("items event = %+v", v)
			}
			kinds = append(kinds, "items")
		case *NodeEvent:
			if v.Redirect != "" {
				kinds = append(kinds, "delete:"+v.Redirect)
			} else {
				kinds = append(kinds, "purge")
			}
		case *ConfigurationEvent:
			if len(v.Fields) != 2 || v.Fields[1].Values[0] != "T" {
				t.Errorf("configuration = %+v", v.Fields)
			}
			kinds = append(kinds, "configuration")
		case *SubscriptionEvent:
			kinds = append(kinds, "subscription")
		}
	}
	rec.mu.Unlock()
	if got := strings.Join(kinds, " "); got != "items purge delete:xmpp:pubsub.example?;node=m configuration subscription" {
		t.Errorf("order = %s", got)
	}
	// The API stream got each kind once, typed, through the bridges.
	var types []string
	for len(types) < 6 {
		e := <-events.C
		typ, _, _ := eventjson.Fields(e)
		types = append(types, typ)
		if e.GetProfile() != "a" {
			t.Errorf("api event of profile %q", e.GetProfile())
		}
		switch {
		case e.GetItems() != nil:
			m := e.GetItems()
			if m.GetService() != "pubsub.example" || m.GetNode() != "n" || len(m.GetItems()) != 1 ||
				m.GetItems()[0].GetXml() != "<item id='1' publisher='p@example'><x xmlns='urn:x'>one &amp; <y/></x></item>" {
				t.Errorf("items event = %v", m)
			}
		case e.GetRetract() != nil:
			if !slices.Equal(e.GetRetract().GetIds(), []string{"r1", "r2"}) {
				t.Errorf("retract event = %v", e.GetRetract())
			}
		case e.GetDelete() != nil:
			if e.GetDelete().GetRedirect() != "xmpp:pubsub.example?;node=m" {
				t.Errorf("delete event = %v", e.GetDelete())
			}
		case e.GetPurge() != nil:
			if e.GetPurge().GetNode() != "n" {
				t.Errorf("purge event = %v", e.GetPurge())
			}
		case e.GetConfiguration() != nil:
			if f := e.GetConfiguration().GetFields(); len(f) != 2 || f[1].GetVar() != "pubsub#title" || f[1].GetValues()[0] != "T" {
				t.Errorf("configuration event = %v", e.GetConfiguration())
			}
		case e.GetSubscription() != nil:
			if m := e.GetSubscription(); m.GetSubId() != "s1" || m.GetJid() != "a@example" || m.GetSubscription() != "subscribed" {
				t.Errorf("subscription event = %v", m)
			}
		}
	}
	if got := strings.Join(types, " "); got != "pubsub.items pubsub.retract pubsub.purge pubsub.delete pubsub.configuration pubsub.subscription" {
		t.Errorf("api events = %s", got)
	}
	select {
	case e := <-events.C:
		t.Errorf("extra api event %v (published twice?)", e)
	default:
	}
}

func TestComplete(t *testing.T) {
	n := func(i int) *int { return &i }
	items := func(k int) []wire.Item { return make([]wire.Item, k) }
	for _, tc := range []struct {
		name string
		req  ItemsRequest
		rep  wire.ItemsReply
		want bool
	}{
		{"plain, no set", ItemsRequest{}, wire.ItemsReply{Items: items(3)}, true},
		{"ids", ItemsRequest{ItemIDs: []string{"a"}}, wire.ItemsReply{Items: items(1)}, true},
		{"max_items reached", ItemsRequest{MaxItems: 2}, wire.ItemsReply{Items: items(2)}, false},
		{"max_items not reached", ItemsRequest{MaxItems: 5}, wire.ItemsReply{Items: items(2)}, true},
		{"set count equal, index 0", ItemsRequest{}, wire.ItemsReply{Items: items(2), RSM: &wire.RSMSet{Count: n(2), FirstIndex: n(0)}}, true},
		{"ejabberd negative index", ItemsRequest{MaxItems: 10}, wire.ItemsReply{Items: items(4), RSM: &wire.RSMSet{Count: n(4), FirstIndex: n(-6)}}, true},
		{"set count larger", ItemsRequest{}, wire.ItemsReply{Items: items(2), RSM: &wire.RSMSet{Count: n(5), FirstIndex: n(0)}}, false},
		{"set without count", ItemsRequest{}, wire.ItemsReply{Items: items(2), RSM: &wire.RSMSet{}}, false},
		{"set later page", ItemsRequest{}, wire.ItemsReply{Items: items(2), RSM: &wire.RSMSet{Count: n(2), FirstIndex: n(3)}}, false},
	} {
		if got := Complete(&tc.req, tc.rep); got != tc.want {
			t.Errorf("%s: complete = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPageJSON(t *testing.T) {
	n := func(i int) *int { return &i }
	p := &ItemsPage{Items: []wire.Item{{ID: "a'&", Payload: []byte("<x/>")}, {ID: "b", Publisher: "p@e", Payload: []byte("<y/>")}},
		RSM: &wire.RSMSet{Count: n(2), FirstIndex: n(0), First: "a'&", Last: "b"}, Complete: true}
	b, err := p.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"items":[{"id":"a'&","publisher":null,"xml":"<item id='a&apos;&amp;'><x/></item>"},{"id":"b","publisher":"p@e","xml":"<item id='b' publisher='p@e'><y/></item>"}],"rsm":{"count":2,"index":0,"first":"a'&","last":"b"},"complete":true,"from_cache":false,"stale":false}`
	if got := strings.NewReplacer(`\u0026`, "&", `\u003c`, "<", `\u003e`, ">").Replace(string(b)); got != want {
		t.Errorf("json:\n got %s\nwant %s", got, want)
	}
	b, _ = (&ItemsPage{}).MarshalJSON()
	if string(b) != `{"items":[],"rsm":null,"complete":false,"from_cache":false,"stale":false}` {
		t.Errorf("empty page json = %s", b)
	}
}
