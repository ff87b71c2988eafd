package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/internal/testsvc"
)

// servers are shared by the tests of this package (stopped by TestMain);
// they have direct TLS listeners for the discovery tests.
var servers = testsvc.SharedXMPP{Accounts: map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}, DirectTLS: true}

// startXMPP returns the shared server of kind and records its use; the
// tests use distinct node names.
func startXMPP(t testing.TB, kind string, _ map[string]string) *testsvc.XMPPServer {
	t.Helper()
	return servers.Use(t, kind)
}

// pubsubEnv is a daemon with profile alice connected to srv.
func pubsubEnv(t testing.TB, srv *testsvc.XMPPServer, vars ...string) *env {
	t.Helper()
	return pubsubEnvAs(t, srv, "alice", "alice-pw", vars...)
}

// pubsubEnvAs is a daemon with profile alice connected to srv as the
// account user (tests that need a PEP service of their own).
func pubsubEnvAs(t testing.TB, srv *testsvc.XMPPServer, user, password string, vars ...string) *env {
	t.Helper()
	e := newEnv(t)
	e.vars = append(append(e.vars, "ALICE_PW="+password), vars...)
	e.serve(t)
	if out, errs, code := e.cli(t, "profile", "create", "alice", "--jid", user+"@"+srv.Domain, "--password-env", "ALICE_PW",
		"--host", srv.Host, "--port", strconv.Itoa(srv.Port), "--ca-file", srv.CAFile); code != exitOK {
		t.Fatalf("profile create: %d %s %s", code, out, errs)
	}
	if out, errs, code := e.cli(t, "profile", "connect", "alice"); code != exitOK {
		t.Fatalf("profile connect: %d %s %s", code, out, errs)
	}
	// Items are parsed by the microblog plugin once it runs: tests that
	// look at parsed data start after it does.
	deadline := time.Now().Add(2 * time.Minute)
	for !microblogRunning(t, e) {
		if time.Now().After(deadline) {
			t.Fatal("the microblog plugin never runs")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

func microblogRunning(t testing.TB, e *env) bool {
	out, _, code := e.cli(t, "plugins", "list", "-o", "json")
	var l pluginsList
	if code != exitOK || json.Unmarshal([]byte(out), &l) != nil {
		return false
	}
	for _, p := range l.Plugins {
		if p.Name == "microblog" && p.State == "running" {
			return true
		}
	}
	return false
}

// pageOut is `pubsub items -o json`.
type pageOut struct {
	Items []struct {
		ID        string  `json:"id"`
		Publisher *string `json:"publisher"`
		XML       string  `json:"xml"`
	} `json:"items"`
	RSM *struct {
		Count *int    `json:"count"`
		Index *int    `json:"index"`
		First *string `json:"first"`
		Last  *string `json:"last"`
	} `json:"rsm"`
	Complete  bool `json:"complete"`
	FromCache bool `json:"from_cache"`
	Stale     bool `json:"stale"`
}

func (p pageOut) ids() string {
	var s []string
	for _, it := range p.Items {
		s = append(s, it.ID)
	}
	return strings.Join(s, ",")
}

func itemsJSON(t *testing.T, e *env, args ...string) pageOut {
	t.Helper()
	out, errs, code := e.cli(t, append([]string{"pubsub", "items", "-p", "alice", "-o", "json"}, args...)...)
	if code != exitOK {
		t.Fatalf("pubsub items %v: exit %d %s %s", args, code, out, errs)
	}
	m := decode(t, out)
	if k := jsonKeys(m); k != "complete,from_cache,items,rsm,stale" {
		t.Errorf("items keys = %s", k)
	}
	for _, it := range m["items"].([]any) {
		if k := jsonKeys(it.(map[string]any)); k != "id,publisher,xml" {
			t.Errorf("item keys = %s", k)
		}
	}
	var p pageOut
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func counter(t *testing.T, e *env) float64 {
	t.Helper()
	out, _, code := e.cli(t, "status", "-o", "json")
	if code != exitOK {
		t.Fatalf("status: %d", code)
	}
	return decode(t, out)["counters"].(map[string]any)["pubsub_items_requests"].(float64)
}

// TestPubSubCLI drives every pubsub verb through the CLI and a re-executed
// daemon on both servers, checking the JSON shapes and exit codes of
// DESIGN §9.
func TestPubSubCLI(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := startXMPP(t, kind, map[string]string{"alice": "alice-pw"})
			e := pubsubEnv(t, srv)
			svc := []string{} // Prosody: the own PEP service (no -s)
			if kind == testsvc.KindEjabberd {
				svc = []string{"-s", srv.PubSub}
			}
			node := "urn:test:cli"
			with := func(args ...string) []string { return append(append(args, svc...), "-n", node) }

			if out, errs, code := e.cli(t, append(with("pubsub", "node", "create", "-p", "alice", "-o", "json"),
				"--option", "pubsub#max_items=100", "--option", "pubsub#access_model=open")...); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
				t.Fatalf("node create: %d %s %s", code, out, errs)
			}
			for i := 1; i <= 5; i++ {
				out, errs, code := e.cliIn(t, fmt.Sprintf("<e xmlns='urn:test:e'>%d &amp; more</e>\n", i), append(with("pubsub", "publish", "-p", "alice", "-o", "json"), "-i", fmt.Sprintf("c%d", i))...)
				if code != exitOK || strings.TrimSpace(out) != fmt.Sprintf(`{"id":"c%d"}`, i) {
					t.Fatalf("publish: %d %s %s", code, out, errs)
				}
			}
			out, _, code := e.cliIn(t, "<e xmlns='urn:test:e'>auto</e>", with("pubsub", "publish", "-p", "alice", "-o", "json")...)
			var pub struct{ ID *string }
			if code != exitOK || json.Unmarshal([]byte(out), &pub) != nil || pub.ID == nil || *pub.ID == "" {
				t.Fatalf("publish with a service id: %d %s", code, out)
			}
			before := counter(t, e)
			p := itemsJSON(t, e, with()...)
			if p.ids() != "c1,c2,c3,c4,c5,"+*pub.ID || p.FromCache || p.Stale {
				t.Errorf("items: %+v", p)
			}
			if p.Items[0].XML != "<item id='c1'><e xmlns='urn:test:e'>1 &amp; more</e></item>" && !strings.HasPrefix(p.Items[0].XML, "<item id='c1' publisher=") {
				t.Errorf("xml = %s", p.Items[0].XML)
			}
			if got := counter(t, e) - before; got != 1 {
				t.Errorf("pubsub_items_requests grew by %v, want 1", got)
			}
			if p := itemsJSON(t, e, append(with(), "-m", "2", "--no-cache")...); p.ids() != "c5,"+*pub.ID || p.Complete {
				t.Errorf("-m 2: %s complete=%v", p.ids(), p.Complete)
			}
			if p := itemsJSON(t, e, append(with(), "-i", "c2", "-i", "c4")...); !strings.Contains(p.ids(), "c2") || len(p.Items) != 2 {
				t.Errorf("-i: %s", p.ids())
			}
			if kind == testsvc.KindEjabberd {
				first := itemsJSON(t, e, append(with(), "--rsm-max", "2")...)
				if first.ids() != "c1,c2" || first.RSM == nil || first.RSM.Count == nil || *first.RSM.Count != 6 || first.RSM.Last == nil || first.Complete {
					t.Fatalf("--rsm-max 2: %s %+v", first.ids(), first.RSM)
				}
				if p := itemsJSON(t, e, append(with(), "--rsm-max", "2", "--after", *first.RSM.Last)...); p.ids() != "c3,c4" {
					t.Errorf("--after: %s", p.ids())
				}
				last := itemsJSON(t, e, append(with(), "--rsm-max", "2", "--before", "")...)
				if last.ids() != "c5,"+*pub.ID || last.RSM == nil || last.RSM.First == nil {
					t.Fatalf("--before '': %s %+v", last.ids(), last.RSM)
				}
				if p := itemsJSON(t, e, append(with(), "--rsm-max", "2", "--before", *last.RSM.First)...); p.ids() != "c3,c4" {
					t.Errorf("--before: %s", p.ids())
				}
				p := itemsJSON(t, e, append(with(), "--rsm-max", "2", "--index", "1")...)
				if p.ids() != "c2,c3" || p.RSM == nil || p.RSM.Index == nil || *p.RSM.Index != 1 {
					t.Errorf("--index 1: %s %+v", p.ids(), p.RSM)
				}
			} else if p := itemsJSON(t, e, append(with(), "--rsm-max", "2")...); p.RSM != nil || len(p.Items) != 6 {
				t.Errorf("prosody ignores RSM: %s %v", p.ids(), p.RSM)
			}
			if out, errs, code := e.cli(t, append(with("pubsub", "retract", "-p", "alice", "-o", "json"), "-i", "c1", "--notify")...); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
				t.Errorf("retract: %d %s %s", code, out, errs)
			}
			if out, errs, code := e.cli(t, with("pubsub", "subscribe", "-p", "alice", "-o", "json")...); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
				t.Errorf("subscribe: %d %s %s", code, out, errs)
			}
			var errs string
			out, errs, code = e.cli(t, append([]string{"pubsub", "subscriptions", "-p", "alice", "-o", "json"}, svc...)...)
			if code != exitOK || !strings.Contains(out, `"node":"`+node+`"`) {
				t.Errorf("subscriptions: %d %s %s", code, out, errs)
			} else if subs := decode(t, out)["subscriptions"].([]any); jsonKeys(subs[0].(map[string]any)) != "jid,node,sub_id,subscription" {
				t.Errorf("subscription keys: %s", out)
			}
			if out, errs, code := e.cli(t, with("pubsub", "unsubscribe", "-p", "alice", "-o", "json")...); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
				t.Errorf("unsubscribe: %d %s %s", code, out, errs)
			}
			out, errs, code = e.cli(t, with("pubsub", "node", "config", "-p", "alice", "-o", "json")...)
			if code != exitOK || !strings.Contains(out, `"var":"pubsub#max_items"`) {
				t.Errorf("node config: %d %s %s", code, out, errs)
			} else if fs := decode(t, out)["fields"].([]any); jsonKeys(fs[0].(map[string]any)) != "label,type,values,var" {
				t.Errorf("field keys: %s", out)
			}
			if out, errs, code := e.cli(t, append(with("pubsub", "node", "config", "-p", "alice", "-o", "json"), "--option", "pubsub#title=T")...); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
				t.Errorf("node config --option: %d %s %s", code, out, errs)
			}
			for _, verb := range []string{"purge", "delete"} {
				if out, errs, code := e.cli(t, with("pubsub", "node", verb, "-p", "alice", "-o", "json")...); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
					t.Errorf("node %s: %d %s %s", verb, code, out, errs)
				}
			}

			// Refusals: exit 1 with the §9 error object; usage: exit 2.
			out, _, code = e.cli(t, append([]string{"pubsub", "items", "-p", "alice", "-o", "json", "-n", "urn:test:none"}, svc...)...)
			if code != exitFailed || !strings.Contains(out, `"code":"not_found"`) {
				t.Errorf("missing node: %d %s", code, out)
			}
			out, _, code = e.cli(t, append(with("pubsub", "items", "-p", "alice", "-o", "json"), "--order-by", "creation")...)
			if code != exitFailed || !strings.Contains(out, `"code":"failed_precondition"`) || !strings.Contains(out, "XEP-0413") {
				t.Errorf("order-by: %d %s", code, out)
			}
			out, _, code = e.cli(t, "pubsub", "items", "-p", "nobody", "-n", "x", "-o", "json")
			if code != exitFailed || !strings.Contains(out, `"code":"not_found"`) {
				t.Errorf("unknown profile: %d %s", code, out)
			}
			for _, args := range [][]string{
				{"pubsub", "items", "-p", "alice"},
				{"pubsub", "items", "-n", "x"},
				{"pubsub", "retract", "-p", "alice", "-n", "x"},
				{"pubsub", "publish", "-p", "alice", "-n", "x", "--option", "novalue"},
				{"pubsub", "items", "-p", "alice", "-n", "x", "--order-by", "size"},
				{"pubsub", "node"},
				{"pubsub"},
			} {
				if _, errs, code := e.cli(t, args...); code != exitUsage {
					t.Errorf("%v: exit %d (%s), want %d", args, code, errs, exitUsage)
				}
			}
			if out, errs, code := e.cliIn(t, "not xml", "pubsub", "publish", "-p", "alice", "-n", "x", "-o", "json"); code != exitFailed || !strings.Contains(out, "invalid_argument") {
				t.Errorf("bad payload: %d %s %s", code, out, errs)
			}
			e.cli(t, "profile", "disconnect", "alice")
			out, _, code = e.cli(t, "pubsub", "items", "-p", "alice", "-n", "x", "-o", "json")
			if code != exitFailed || !strings.Contains(out, `"code":"failed_precondition"`) || !strings.Contains(out, "profile connect") {
				t.Errorf("disconnected profile: %d %s", code, out)
			}
		})
	}
}

// TestPubSubBigAnswer gets an items answer larger than 4 MiB (gRPC's usual
// message limit) through the API and through the CLI, on both servers.
func TestPubSubBigAnswer(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := startXMPP(t, kind, map[string]string{"alice": "alice-pw"})
			e := pubsubEnv(t, srv)
			svc := []string{}
			service := ""
			if kind == testsvc.KindEjabberd {
				svc, service = []string{"-s", srv.PubSub}, srv.PubSub
			}
			node := "urn:test:big"
			if out, errs, code := e.cli(t, append([]string{"pubsub", "node", "create", "-p", "alice", "-n", node, "--option", "pubsub#max_items=100"}, svc...)...); code != exitOK {
				t.Fatalf("node create: %d %s %s", code, out, errs)
			}
			// 20 items of 240 KiB: each publish stays below Prosody's c2s
			// stanza limit (256 KiB), the answer is 4.7 MiB.
			const n, size = 20, 240 << 10
			for i := 0; i < n; i++ {
				payload := fmt.Sprintf("<blob xmlns='urn:test:big'>%s</blob>", strings.Repeat(strconv.Itoa(i%10), size))
				args := append(append([]string{"pubsub", "publish", "-p", "alice", "-n", node, "-i", fmt.Sprintf("b%02d", i)}, svc...), "-o", "json")
				if out, errs, code := e.cliIn(t, payload, args...); code != exitOK {
					t.Fatalf("publish %d: %d %s %s", i, code, out, errs)
				}
			}
			// Through the API.
			c := backendv1connect.NewPubSubServiceClient(unixHTTP(e.socket), "http://backend")
			res, err := c.Items(context.Background(), connect.NewRequest(&backendv1.PubSubItemsRequest{Profile: "alice", Service: service, Node: node}))
			if err != nil {
				t.Fatalf("api items: %v", err)
			}
			total := 0
			for _, it := range res.Msg.GetItems() {
				total += len(it.GetXml())
			}
			if len(res.Msg.GetItems()) != n || total <= 4<<20 {
				t.Fatalf("api: %d items, %d bytes", len(res.Msg.GetItems()), total)
			}
			// Through the CLI.
			out, errs, code := e.cli(t, append([]string{"pubsub", "items", "-p", "alice", "-n", node, "-o", "json"}, svc...)...)
			if code != exitOK {
				t.Fatalf("cli items: %d %s", code, errs)
			}
			var p pageOut
			if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Items) != n || len(out) <= 4<<20 {
				t.Fatalf("cli: %d items, %d bytes, %v", len(p.Items), len(out), err)
			}
			if p.Items[3].XML != res.Msg.GetItems()[3].GetXml() {
				t.Error("cli and api answers differ")
			}
			t.Logf("%s: %d items, %.1f MiB of JSON", kind, len(p.Items), float64(len(out))/(1<<20))
		})
	}
}

// unixHTTP is an HTTP client over the daemon's Unix socket.
func unixHTTP(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
}

// waitServedCLI waits until a get of the node (args: -p/-s/-n) is answered
// from the cache: a node complete and fresh in `cache status` may still
// have a notification on its way (the one a subscription brings, say),
// during which gets go to the network.
func waitServedCLI(t *testing.T, e *env, args ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _, code := e.cli(t, append([]string{"pubsub", "items", "-p", "alice", "-o", "json", "-m", "1"}, args...)...)
		var p pageOut
		if code == exitOK && json.Unmarshal([]byte(out), &p) == nil && p.FromCache {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %v never answered from the cache", args)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
