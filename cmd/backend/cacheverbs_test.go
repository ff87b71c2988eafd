package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/internal/testsvc"
)

// TestCacheVerbsCLI drives cache sync/status/get/purge/reset through the
// CLI and a re-executed daemon, and proves cache hits with the status
// counter of items requests.
func TestCacheVerbsCLI(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := startXMPP(t, kind, map[string]string{"alice": "alice-pw"})
			e := pubsubEnv(t, srv)
			svc := []string{}
			service := "alice@" + srv.Domain
			if kind == testsvc.KindEjabberd {
				svc = []string{"-s", srv.PubSub}
				service = srv.PubSub
			}
			node := fmt.Sprintf("urn:test:cachecli-%s", kind)
			with := func(args ...string) []string { return append(append(args, svc...), "-n", node) }
			if out, errs, code := e.cli(t, append(with("pubsub", "node", "create", "-p", "alice", "-o", "json"),
				"--option", "pubsub#max_items=max")...); code != exitOK {
				t.Fatalf("node create: %d %s %s", code, out, errs)
			}
			for i := 1; i <= 30; i++ {
				payload := fmt.Sprintf("<e xmlns='urn:test:e'><![CDATA[%d <raw>]]> &amp; <b>mixed</b></e>", i)
				if out, errs, code := e.cliIn(t, payload, append(with("pubsub", "publish", "-p", "alice", "-o", "json"), "-i", fmt.Sprintf("c%02d", i))...); code != exitOK {
					t.Fatalf("publish: %d %s %s", code, out, errs)
				}
			}
			// Not cached yet: cache get refuses with exit code 1.
			if out, _, code := e.cli(t, with("cache", "get", "-p", "alice", "-o", "json")...); code != exitFailed || !strings.Contains(out, "not cached") {
				t.Errorf("cache get before sync: %d %s", code, out)
			}
			// Table mode: progress bar on stderr.
			out, errs, code := e.cli(t, with("cache", "sync", "-p", "alice", "--wait")...)
			if code != exitOK || !strings.Contains(out, "complete, fresh, 30 items") {
				t.Fatalf("cache sync --wait: %d %q %q", code, out, errs)
			}
			out, _, code = e.cli(t, with("cache", "sync", "-p", "alice", "--wait", "-o", "json")...)
			m := decode(t, out)
			if code != exitOK || jsonKeys(m) != "done,error,fresh,items,node,parse_pending,profile,service,state,total" || m["fresh"] != true || m["parse_pending"] != 0.0 || m["state"] != "complete" || m["items"] != 30.0 {
				t.Fatalf("cache sync -o json: %d %s", code, out)
			}
			out, _, code = e.cli(t, "cache", "status", "-p", "alice", "-o", "json")
			var st struct {
				Nodes []map[string]any `json:"nodes"`
			}
			if code != exitOK || json.Unmarshal([]byte(out), &st) != nil {
				t.Fatalf("cache status: %d %s", code, out)
			}
			var mine map[string]any
			for _, n := range st.Nodes {
				if k := jsonKeys(n); k != "analyser,attempts,capacity,capacity_source,fresh,items,last_error,last_sync,node,parse_pending,profile,reconcile_method,service,state,subtype,type" {
					t.Errorf("status keys = %s", k)
				}
				if n["node"] == node {
					mine = n
				}
			}
			if mine == nil || mine["state"] != "complete" || mine["fresh"] != true || mine["items"] != 30.0 || mine["service"] != service || mine["last_sync"] == nil ||
				mine["reconcile_method"] != "full" {
				t.Fatalf("status of the node: %v", mine)
			}
			// Served from the cache: no items request; --no-cache sends one;
			// same items.
			waitServedCLI(t, e, with()...)
			for _, shape := range [][]string{{}, {"-m", "7"}, {"-i", "c20", "-i", "c03", "-i", "nope"}} {
				before := counter(t, e)
				cached := itemsJSON(t, e, append(with(), shape...)...)
				mid := counter(t, e)
				live := itemsJSON(t, e, append(with(append([]string{}, shape...)...), "--no-cache")...)
				after := counter(t, e)
				if mid-before != 0 || !cached.FromCache || after-mid != 1 || live.FromCache {
					t.Errorf("%v: cached call sent %v (from_cache %v), live call sent %v", shape, mid-before, cached.FromCache, after-mid)
				}
				cj, _ := json.Marshal(cached.Items)
				lj, _ := json.Marshal(live.Items)
				if string(cj) != string(lj) {
					t.Errorf("%v: cache %s\nlive %s", shape, cj, lj)
				}
			}
			out, _, code = e.cli(t, append(with("cache", "get", "-p", "alice", "-o", "json"), "-m", "2")...)
			m = decode(t, out)
			if code != exitOK || jsonKeys(m) != "complete,from_cache,items,rsm,stale" || m["from_cache"] != true || len(m["items"].([]any)) != 2 {
				t.Errorf("cache get: %d %s", code, out)
			}
			out, _, code = e.cli(t, "cache", "purge", "-p", "alice", "-n", node, "-o", "json")
			if code != exitOK || strings.TrimSpace(out) != `{"items":30,"nodes":1,"ok":true}` {
				t.Errorf("cache purge: %d %s", code, out)
			}
			before := counter(t, e)
			if p := itemsJSON(t, e, with()...); p.FromCache || len(p.Items) != 30 {
				t.Errorf("after purge: from_cache=%v items=%d", p.FromCache, len(p.Items))
			}
			if counter(t, e)-before < 1 {
				t.Error("after purge: no items request sent")
			}
			if _, _, code := e.cli(t, "cache", "reset"); code != exitUsage {
				t.Errorf("reset without --yes: exit %d", code)
			}
			out, _, code = e.cli(t, "cache", "reset", "--yes", "-o", "json")
			if code != exitOK || !strings.Contains(out, `"ok":true`) {
				t.Errorf("cache reset: %d %s", code, out)
			}
			out, _, _ = e.cli(t, "cache", "status", "-o", "json")
			if strings.TrimSpace(out) != `{"nodes":[]}` {
				t.Errorf("status after reset: %s", out)
			}
		})
	}
}

// TestCacheMicroblog: the first-party microblog plugin (re-executed by the
// daemon) declares the xep-0277 analyser: the first get of the microblog
// node goes to the network and starts a sync; the node is then served from
// the cache, its items parsed.
func TestCacheMicroblog(t *testing.T) {
	srv := startXMPP(t, testsvc.KindProsody, map[string]string{"alice": "alice-pw"})
	e := pubsubEnv(t, srv)
	const node = "urn:xmpp:microblog:0"
	for i := 1; i <= 3; i++ {
		entry := fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>post %d</title><id>urn:uuid:%d</id>"+
			"<published>2026-01-0%dT10:00:00Z</published><updated>2026-01-0%dT10:00:00Z</updated><author><name>Alice</name></author></entry>", i, i, i, i)
		if out, errs, code := e.cliIn(t, entry, "pubsub", "publish", "-p", "alice", "-n", node, "-i", fmt.Sprintf("p%d", i),
			"--option", "pubsub#max_items=max", "-o", "json"); code != exitOK {
			t.Fatalf("publish: %d %s %s", code, out, errs)
		}
	}
	if p := itemsJSON(t, e, "-n", node); p.FromCache || len(p.Items) != 3 {
		t.Fatalf("first get: from_cache=%v items=%d", p.FromCache, len(p.Items))
	}
	var mine map[string]any
	for range 500 {
		out, _, _ := e.cli(t, "cache", "status", "-p", "alice", "-n", node, "-o", "json")
		var st struct {
			Nodes []map[string]any `json:"nodes"`
		}
		if json.Unmarshal([]byte(out), &st) == nil && len(st.Nodes) == 1 && st.Nodes[0]["state"] == "complete" && st.Nodes[0]["fresh"] == true {
			mine = st.Nodes[0]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mine == nil || mine["analyser"] != "xep-0277" || mine["type"] != "blog" || mine["items"] != 3.0 {
		t.Fatalf("microblog node status: %v", mine)
	}
	waitServedCLI(t, e, "-n", node)
	before := counter(t, e)
	if p := itemsJSON(t, e, "-n", node, "-m", "2"); !p.FromCache || p.ids() != "p2,p3" {
		t.Errorf("cached get: from_cache=%v ids=%s", p.FromCache, p.ids())
	}
	if counter(t, e) != before {
		t.Error("a cached get sent an items request")
	}
	// Parsed by the plugin's parser (searchable).
	out, errs, code := e.cli(t, "cache", "search", "-p", "alice", "-n", node, "-o", "json")
	var found struct {
		Items []struct {
			ID     string          `json:"id"`
			Parsed json.RawMessage `json:"parsed"`
		} `json:"items"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &found) != nil || len(found.Items) != 3 {
		t.Fatalf("cache search: %d %s %s", code, out, errs)
	}
	for _, it := range found.Items {
		if len(it.Parsed) == 0 || string(it.Parsed) == "null" || !strings.Contains(string(it.Parsed), "Alice") {
			t.Errorf("item %s parsed = %s", it.ID, it.Parsed)
		}
	}
}

// TestCacheMicroblogPluginKilled: the microblog plugin is killed while a
// node is synced: nothing is lost (every item stored and served), the node
// stays synced, and every item is parsed once the plugin is back.
func TestCacheMicroblogPluginKilled(t *testing.T) {
	srv := startXMPP(t, testsvc.KindProsody, map[string]string{"alice": "alice-pw"})
	e := pubsubEnv(t, srv, "BACKEND_LOG_LEVEL=debug")
	// A comments node of its own (the shared server keeps other tests'
	// posts on the main blog node); the microblog analyser syncs it too.
	node := fmt.Sprintf("urn:xmpp:microblog:0:comments/killed-%d", time.Now().UnixNano())
	const n = 400
	var pid int64
	waitFor(t, "microblog running", func() bool {
		for _, p := range e.plugins(t).Plugins {
			if p.Name == "microblog" && p.State == "running" && p.PID != nil {
				pid = *p.PID
				return true
			}
		}
		return false
	})
	// Published through the API (a CLI run per item would be slow).
	api := backendv1connect.NewPubSubServiceClient(unixHTTP(e.socket), "http://backend")
	for i := 0; i < n; i++ {
		entry := fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>post %d</title><id>urn:uuid:%d</id>"+
			"<published>2026-01-01T10:00:00Z</published><updated>2026-01-01T10:00:00Z</updated></entry>", i, i)
		_, err := api.Publish(context.Background(), connect.NewRequest(&backendv1.PubSubPublishRequest{Profile: "alice", Node: node,
			Id: fmt.Sprintf("p%03d", i), Payload: []byte(entry), Options: []*backendv1.PubSubOption{{Var: "pubsub#max_items", Value: "max"}}}))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	done := make(chan string, 1)
	go func() {
		out, errs, code := e.cli(t, "cache", "sync", "-p", "alice", "-n", node, "--wait", "-o", "json")
		done <- fmt.Sprintf("%d %s %s", code, out, errs)
	}()
	time.Sleep(30 * time.Millisecond)
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if res := <-done; !strings.HasPrefix(res, "0 ") {
		t.Fatalf("cache sync: %s", res)
	}
	// Every item parsed once the plugin restarted (pending ones re-parsed).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _, code := e.cli(t, "cache", "search", "-p", "alice", "-n", node, "-F", "content like post%", "-o", "json") // title-only posts: the title is the content
		var found struct {
			Items []json.RawMessage `json:"items"`
		}
		if code == exitOK && json.Unmarshal([]byte(out), &found) == nil && len(found.Items) == n {
			break
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, l := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(l, "pars") || strings.Contains(l, "reparse") || strings.Contains(l, "plugin") || strings.Contains(l, "sync") {
					lines = append(lines, l)
				}
			}
			t.Fatalf("%d of %d items parsed after the plugin came back; daemon log:\n%s", len(found.Items), n, strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the kill interrupted a parse batch: %v; items parsed while the plugin was down: %v",
		strings.Contains(e.logs.String(), "items stay pending"), strings.Contains(e.logs.String(), "parsed items stored while their parser was down"))
	out, _, _ := e.cli(t, "cache", "status", "-p", "alice", "-n", node, "-o", "json")
	var st struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if json.Unmarshal([]byte(out), &st) != nil || len(st.Nodes) != 1 || st.Nodes[0]["state"] != "complete" || st.Nodes[0]["items"] != float64(n) {
		t.Fatalf("status after the kill: %s", out)
	}
	waitServedCLI(t, e, "-n", node)
	before := counter(t, e)
	if p := itemsJSON(t, e, "-n", node); !p.FromCache || len(p.Items) != n {
		t.Errorf("served after the kill: from_cache=%v items=%d", p.FromCache, len(p.Items))
	}
	if counter(t, e) != before {
		t.Error("a cached get sent an items request")
	}
}
