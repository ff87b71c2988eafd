package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/daemon"
	"example.org/backend/core/pluginhost"
	"example.org/backend/internal/testsvc"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	"example.org/backend/plugin-sdk/plugins/xsstest"
)

// startFirstParty starts every first-party plugin the way the daemon does
// (this binary re-executed with the hidden plugin subcommand) and returns
// a client per parser name.
func startFirstParty(t *testing.T) map[string]*host.Client {
	t.Helper()
	ctx := context.Background()
	byParser := map[string]*host.Client{}
	for _, spec := range pluginhost.BuiltinSpecs(daemon.PluginSubcommand, firstPartyPlugins()) {
		cmd := spec.Cmd()
		cmd.Env = append(os.Environ(), "BACKEND_TEST_MAIN=1")
		c, err := host.Start(ctx, host.Config{Name: spec.Name, Cmd: cmd})
		if err != nil {
			t.Fatalf("start %s: %v", spec.Name, err)
		}
		t.Cleanup(c.Kill)
		d, err := c.Describe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range d.Analysers {
			byParser[a.Parser] = c
		}
	}
	return byParser
}

// TestFirstPartyParsersXSSThroughReexec runs the whole XSS corpus
// (plugins/xsstest) through the first-party plugins as the daemon runs
// them (re-executed from its binary), one batch per parser, and checks
// every output field: parsed as HTML with x/net/html, only the policy's
// elements and attributes; every URL (entities decoded, whitespace and
// control characters stripped) with an allowed scheme.
func TestFirstPartyParsersXSSThroughReexec(t *testing.T) {
	plugins := startFirstParty(t)
	byParser := map[string][]xsstest.Vector{}
	for _, v := range xsstest.Vectors() {
		byParser[v.Parser] = append(byParser[v.Parser], v)
	}
	checked := 0
	for parser, vs := range byParser {
		c := plugins[parser]
		if c == nil {
			t.Fatalf("no first-party plugin has the parser %s", parser)
		}
		req := sdk.ParseRequest{Profile: "p", Service: "mallory@evil.example", Node: vs[0].Node, Analyser: vs[0].Analyser, Parser: parser}
		for _, v := range vs {
			req.Items = append(req.Items, sdk.Item{ID: v.Name, Publisher: "mallory@evil.example", Payload: []byte(v.Payload)})
		}
		res, err := c.Parse(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil {
				t.Errorf("%s: not parsed: %v", vs[i].Name, r.Err)
				continue
			}
			for _, bad := range xsstest.Check(r.JSON, xsstest.ParserRules[parser]) {
				t.Errorf("%s: %s", vs[i].Name, bad)
			}
			for _, k := range vs[i].Keep {
				if !strings.Contains(string(r.JSON), k) {
					t.Errorf("%s: %q was lost", vs[i].Name, k)
				}
			}
			checked++
		}
	}
	if checked < 300 {
		t.Errorf("only %d vectors checked", checked)
	}
	t.Logf("%d vectors checked through %d parsers", checked, len(byParser))
}

// searchOut is `cache search -o json`.
type searchOut struct {
	Items []struct {
		Service string         `json:"service"`
		Node    string         `json:"node"`
		ID      string         `json:"id"`
		Parsed  map[string]any `json:"parsed"`
	} `json:"items"`
}

func (s searchOut) ids() string {
	var ids []string
	for _, it := range s.Items {
		ids = append(ids, it.ID)
	}
	return strings.Join(ids, ",")
}

func searchCLI(t *testing.T, e *env, args ...string) searchOut {
	t.Helper()
	out, errs, code := e.cli(t, append([]string{"cache", "search", "-p", "alice", "-o", "json"}, args...)...)
	if code != exitOK {
		t.Fatalf("cache search %q: exit %d %s %s", args, code, out, errs)
	}
	var s searchOut
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return s
}

// waitSynced waits until node is complete and fresh with n items, analysed
// by analyser, and returns its status.
func waitSynced(t *testing.T, e *env, node, analyser string, n int) map[string]any {
	t.Helper()
	var last string
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, _, _ := e.cli(t, "cache", "status", "-p", "alice", "-n", node, "-o", "json")
		last = out
		var st struct {
			Nodes []map[string]any `json:"nodes"`
		}
		if json.Unmarshal([]byte(out), &st) == nil && len(st.Nodes) == 1 {
			s := st.Nodes[0]
			if s["analyser"] == analyser && s["state"] == "complete" && s["fresh"] == true && s["items"] == float64(n) {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %s never complete and fresh with %d items by %s: %s", node, n, analyser, last)
	return nil
}

// field reads a dotted path of parsed data ("author.jid", "infos[0].url").
func field(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		name, idx, hasIdx := strings.Cut(part, "[")
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
		if hasIdx {
			var i int
			fmt.Sscanf(idx, "%d]", &i)
			a, ok := v.([]any)
			if !ok || i >= len(a) {
				return nil
			}
			v = a[i]
		}
	}
	return v
}

// TestFirstPartyParsersEndToEnd: on both servers, items of every
// first-party parser are published to the profile's own PEP service
// (XEP-0402 bookmarks with the publish-options ejabberd 23.01 accepts,
// XEP-0084 avatar metadata, XEP-0292 vCard4, XEP-0172 nickname, a
// microblog post and its comments node), then read through the daemon:
// the first get goes to the network and its analyser (by node prefix and
// payload namespace) starts a sync; the node becomes complete and fresh,
// is served from the cache without an items request, and its items are
// found by cache search on their parsed keys (indexed paths and others)
// and by full-text search. A hostile post is published too: its parsed
// data passes the XSS check end to end.
func TestFirstPartyParsersEndToEnd(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := startXMPP(t, kind, nil)
			e := pubsubEnvAs(t, srv, "carol", "carol-pw")
			logs := e.logs
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("daemon log:\n%s", logs.String())
				}
			})
			waitFor(t, "pep running", func() bool { return e.plugin(t, "pep").State == "running" })
			me := "carol@" + srv.Domain
			// PEP nodes keep one item unless configured: the nodes that hold
			// several are created with a larger max_items first.
			for _, n := range []string{"urn:xmpp:bookmarks:1", "urn:xmpp:microblog:0", "urn:xmpp:microblog:0:comments/post-1"} {
				args := []string{"pubsub", "node", "create", "-p", "alice", "-n", n, "--option", "pubsub#max_items=100", "-o", "json"}
				if n == "urn:xmpp:bookmarks:1" {
					args = append(args, "--option", "pubsub#access_model=whitelist", "--option", "pubsub#persist_items=true")
				}
				if out, errs, code := e.cli(t, args...); code != exitOK {
					t.Fatalf("node create %s: %d %s %s", n, code, out, errs)
				}
			}
			publish := func(node, id, payload string, options ...string) {
				t.Helper()
				args := []string{"pubsub", "publish", "-p", "alice", "-n", node, "-i", id, "-o", "json"}
				for _, o := range options {
					args = append(args, "--option", o)
				}
				if out, errs, code := e.cliIn(t, payload, args...); code != exitOK {
					t.Fatalf("publish %s/%s: %d %s %s", node, id, code, out, errs)
				}
			}
			// XEP-0402 §3: persistent and private, as publish-options (the only
			// two ejabberd 23.01 accepts).
			bookmarkOpts := []string{"pubsub#persist_items=true", "pubsub#access_model=whitelist"}
			publish("urn:xmpp:bookmarks:1", "theplay@conference.shakespeare.lit", `<conference xmlns='urn:xmpp:bookmarks:1' name='The Play&apos;s the Thing' autojoin='true'><nick>JC</nick></conference>`, bookmarkOpts...)
			publish("urn:xmpp:bookmarks:1", "orchard@conference.shakespeare.lit", `<conference xmlns='urn:xmpp:bookmarks:1' name='The Orchard' autojoin='1'><nick>JC</nick><password>s3cret</password><extensions><state xmlns='http://myclient.example/bookmark/state' minimized='true'/></extensions></conference>`, bookmarkOpts...)
			const avatarID = "111f4b3c50d7b0df729d299bc6f8e9ef9066971f"
			publish("urn:xmpp:avatar:metadata", avatarID, `<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='12345' id='`+avatarID+`' height='64' type='image/png' width='64' url='https://avatars.example.org/happy.png'/></metadata>`)
			publish("urn:xmpp:vcard4", "current", `<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Carol Capulet</text></fn><nickname><text>caro</text></nickname><email><parameters><type><text>home</text></type></parameters><text>carol@example.org</text></email><note><text>Keeps the orchard</text></note><photo><uri>javascript:alert(1)</uri></photo></vcard>`)
			publish("http://jabber.org/protocol/nick", "current", `<nick xmlns='http://jabber.org/protocol/nick'>Ishmael</nick>`)
			const blog, comments = "urn:xmpp:microblog:0", "urn:xmpp:microblog:0:comments/post-1"
			publish(blog, "post-1", `<entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>Orchard news</title><author><name>Carol</name><uri>xmpp:`+me+`</uri></author><updated>2026-02-01T10:00:00Z</updated><published>2026-02-01T10:00:00Z</published><category term='orchard'/><id>xmpp:`+me+`?;node=urn%3Axmpp%3Amicroblog%3A0;item=post-1</id><link href='xmpp:`+me+`?;node=urn%3Axmpp%3Amicroblog%3A0%3Acomments%2Fpost-1' rel='replies' title='comments'/></entry>`)
			publish(blog, "hostile", `<entry xmlns='http://www.w3.org/2005/Atom'><title>t</title><content type='html'>&lt;img src=x onerror=alert(1)&gt;&lt;a href="jav&amp;#x09;ascript:alert(1)"&gt;x&lt;/a&gt;&lt;svg onload=alert(1)&gt;&lt;/svg&gt;&lt;p style="background:url(javascript:alert(1))"&gt;kept text&lt;/p&gt;</content><link href=' JaVaScRiPt:alert(1)'/><author><uri>vbscript:x</uri></author><updated>2026-02-02T10:00:00Z</updated></entry>`)
			publish(comments, "c1", `<entry xmlns='http://www.w3.org/2005/Atom'><author><name>Juliet</name><uri>xmpp:juliet@capulet.lit</uri></author><title type='text'>Lovely orchard!</title><published>2026-02-01T11:00:00Z</published></entry>`)

			for _, n := range []struct {
				node, analyser, typ, subtype string
				items                        int
			}{
				{"urn:xmpp:bookmarks:1", "xep-0402", "bookmarks", "", 2},
				{"urn:xmpp:avatar:metadata", "xep-0084", "avatar", "", 1},
				{"urn:xmpp:vcard4", "xep-0292", "vcard", "", 1},
				{"http://jabber.org/protocol/nick", "xep-0172", "nickname", "", 1},
				{blog, "xep-0277", "blog", "", 2},
				{comments, "xep-0277-comments", "blog", "comment", 1},
			} {
				// The first get goes to the network; the analyser makes the node synced.
				if p := itemsJSON(t, e, "-n", n.node); p.FromCache || len(p.Items) != n.items {
					t.Fatalf("%s: first get: from_cache %v, %d items", n.node, p.FromCache, len(p.Items))
				}
				st := waitSynced(t, e, n.node, n.analyser, n.items)
				if st["type"] != n.typ || (n.subtype != "" && st["subtype"] != n.subtype) || st["service"] != me {
					t.Errorf("%s: status %v", n.node, st)
				}
				waitServedCLI(t, e, "-n", n.node)
				before := counter(t, e)
				if p := itemsJSON(t, e, "-n", n.node); !p.FromCache || len(p.Items) != n.items {
					t.Errorf("%s: cached get: from_cache %v, %d items", n.node, p.FromCache, len(p.Items))
				}
				// ejabberd's PEP nodes notify no retraction (their
				// pubsub#notify_retract is 0): each cached get is checked
				// first with one request for the node's newest item and
				// count (docs/cache.md).
				checks := 0.0
				if kind == testsvc.KindEjabberd {
					checks = 1
				}
				if sent := counter(t, e) - before; sent != checks {
					t.Errorf("%s: a cached get sent %v items requests, want %v", n.node, sent, checks)
				}
			}

			// Searched on their parsed keys, each parser's.
			for _, q := range []struct {
				args          []string
				ids           string
				path          string
				want          any
				wantElsewhere map[string]any
			}{
				{[]string{"-n", "urn:xmpp:bookmarks:1", "-F", "autojoin == true", "--order-by", "item_id"},
					"orchard@conference.shakespeare.lit,theplay@conference.shakespeare.lit", "", nil, nil},
				{[]string{"-t", "bookmarks", "-F", "name == The Orchard"}, "orchard@conference.shakespeare.lit", "has_password", true,
					map[string]any{"nick": "JC", "extensions[0].name": "state", "jid": "orchard@conference.shakespeare.lit"}},
				{[]string{"-t", "avatar", "-F", "avatar.id == " + avatarID}, avatarID, "avatar.url", "https://avatars.example.org/happy.png",
					map[string]any{"disabled": false, "infos[0].width": 64.0}},
				{[]string{"-t", "vcard", "-F", "fn == Carol Capulet"}, "current", "nicknames[0]", "caro",
					map[string]any{"emails[0].address": "carol@example.org", "emails[0].types[0]": "home", "notes[0]": "Keeps the orchard"}},
				{[]string{"-t", "vcard", "-F", `nicknames overlap ["caro"]`}, "current", "", nil, nil},
				{[]string{"-t", "nickname", "-F", "nick == Ishmael"}, "current", "nick", "Ishmael", nil},
				{[]string{"-n", blog, "-F", `tags overlap ["orchard"]`}, "post-1", "content", "Orchard news",
					map[string]any{"title": nil, "author.jid": me, "comments[0].node": comments,
						"uri": "xmpp:" + me + "?;node=urn%3Axmpp%3Amicroblog%3A0;item=post-1"}},
				{[]string{"-t", "blog", "--subtype", "comment", "-F", "parent_item == post-1"}, "c1", "content", "Lovely orchard!",
					map[string]any{"author.jid": "juliet@capulet.lit", "author.jid_verified": false}},
				{[]string{"-f", "orchard", "-n", comments}, "c1", "", nil, nil},
				{[]string{"-f", "Ishmael"}, "current", "", nil, nil},
				{[]string{"-f", "Keeps orchard", "-t", "vcard"}, "current", "", nil, nil},
			} {
				s := searchCLI(t, e, q.args...)
				if s.ids() != q.ids {
					t.Errorf("search %q: ids %s, want %s", q.args, s.ids(), q.ids)
					continue
				}
				if q.path == "" {
					continue
				}
				parsed := s.Items[0].Parsed
				if got := field(parsed, q.path); fmt.Sprint(got) != fmt.Sprint(q.want) {
					t.Errorf("search %q: %s = %v, want %v", q.args, q.path, got, q.want)
				}
				for p, w := range q.wantElsewhere {
					if got := field(parsed, p); fmt.Sprint(got) != fmt.Sprint(w) {
						t.Errorf("search %q: %s = %v, want %v", q.args, p, got, w)
					}
				}
			}
			// Secrets stay out of parsed data; refused URLs are left out.
			if s := searchCLI(t, e, "-t", "bookmarks", "-F", "name == The Orchard"); len(s.Items) == 1 && strings.Contains(fmt.Sprint(s.Items[0].Parsed), "s3cret") {
				t.Errorf("the bookmark's password is in its parsed data: %v", s.Items[0].Parsed)
			}
			if s := searchCLI(t, e, "-t", "vcard"); len(s.Items) != 1 || len(s.Items[0].Parsed["photos"].([]any)) != 0 {
				t.Errorf("vcard photos: %v", s.Items)
			}
			// The hostile post, as search returns it, passes the XSS check.
			out, _, code := e.cli(t, "cache", "search", "-p", "alice", "-n", blog, "-i", "hostile", "-o", "json")
			var raw struct {
				Items []struct {
					Parsed json.RawMessage `json:"parsed"`
				} `json:"items"`
			}
			if code != exitOK || json.Unmarshal([]byte(out), &raw) != nil || len(raw.Items) != 1 {
				t.Fatalf("search hostile: %d %s", code, out)
			}
			for _, bad := range xsstest.Check(raw.Items[0].Parsed, xsstest.MicroblogRules) {
				t.Errorf("hostile post: %s", bad)
			}
			if !strings.Contains(string(raw.Items[0].Parsed), "kept text") || strings.Contains(string(raw.Items[0].Parsed), "avascript") {
				t.Errorf("hostile post parsed: %s", raw.Items[0].Parsed)
			}

			// A new bookmark arrives by notification: parsed and searchable,
			// the node still served from the cache.
			api := backendv1connect.NewPubSubServiceClient(unixHTTP(e.socket), "http://backend")
			var opts []*backendv1.PubSubOption
			for _, o := range bookmarkOpts {
				k, v, _ := strings.Cut(o, "=")
				opts = append(opts, &backendv1.PubSubOption{Var: k, Value: v})
			}
			if _, err := api.Publish(context.Background(), connect.NewRequest(&backendv1.PubSubPublishRequest{Profile: "alice",
				Node: "urn:xmpp:bookmarks:1", Id: "balcony@conference.capulet.lit", Options: opts,
				Payload: []byte(`<conference xmlns='urn:xmpp:bookmarks:1' name='Balcony'/>`)})); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the new bookmark parsed", func() bool {
				return searchCLI(t, e, "-t", "bookmarks", "-F", "name == Balcony").ids() == "balcony@conference.capulet.lit"
			})
			waitServedCLI(t, e, "-n", "urn:xmpp:bookmarks:1")
			if p := itemsJSON(t, e, "-n", "urn:xmpp:bookmarks:1"); !p.FromCache || len(p.Items) != 3 {
				t.Errorf("bookmarks after a notification: from_cache %v, %d items", p.FromCache, len(p.Items))
			}
		})
	}
}

// TestFirstPartyParsersEmptyNodes: the PEP nodes of the first-party
// parsers are analysed by node prefix while they are still empty (DESIGN
// §6, wave 2: "an empty node is analysed by node prefix"; issue #18), so
// the first item published to them arrives by notification into a node
// already cached, parsed and searchable, on both servers. This needs the
// cache to analyse item-less nodes by prefix (plugins/pubsubcache, issue
// #18); the analysers declare prefix and namespace for it.
func TestFirstPartyParsersEmptyNodes(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := startXMPP(t, kind, nil)
			e := pubsubEnvAs(t, srv, "dave", "dave-pw")
			logs := e.logs
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("daemon log:\n%s", logs.String())
				}
			})
			waitFor(t, "pep running", func() bool { return e.plugin(t, "pep").State == "running" })
			nodes := []struct{ node, analyser, id, payload, filter string }{
				{"urn:xmpp:vcard4", "xep-0292", "current", `<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Dave</text></fn></vcard>`, "fn == Dave"},
				{"http://jabber.org/protocol/nick", "xep-0172", "current", `<nick xmlns='http://jabber.org/protocol/nick'>dave</nick>`, "nick == dave"},
				{"urn:xmpp:avatar:metadata", "xep-0084", "current", `<metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='1' type='image/png'/></metadata>`, "avatar.id == abc"},
			}
			for _, n := range nodes {
				if out, errs, code := e.cli(t, "pubsub", "node", "create", "-p", "alice", "-n", n.node, "-o", "json"); code != exitOK {
					t.Fatalf("node create %s: %d %s %s", n.node, code, out, errs)
				}
				if p := itemsJSON(t, e, "-n", n.node); len(p.Items) != 0 {
					t.Fatalf("%s: %d items in a new node", n.node, len(p.Items))
				}
				waitSynced(t, e, n.node, n.analyser, 0)
			}
			for _, n := range nodes {
				if out, errs, code := e.cliIn(t, n.payload, "pubsub", "publish", "-p", "alice", "-n", n.node, "-i", n.id, "-o", "json"); code != exitOK {
					t.Fatalf("publish %s: %d %s %s", n.node, code, out, errs)
				}
			}
			for _, n := range nodes {
				waitSynced(t, e, n.node, n.analyser, 1)
				waitFor(t, n.node+" parsed", func() bool { return searchCLI(t, e, "-n", n.node, "-F", n.filter).ids() == n.id })
				waitServedCLI(t, e, "-n", n.node)
			}
		})
	}
}
