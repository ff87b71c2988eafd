package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// nodeState returns the cache status of one node of a profile ("" when
// the cache holds nothing of it) and whether it is fresh.
func nodeState(t *testing.T, e *env, profile, node string) (string, bool) {
	t.Helper()
	out, errs, code := e.cli(t, "cache", "status", "-p", profile, "-n", node, "-o", "json")
	if code != exitOK {
		t.Fatalf("cache status: %d %s", code, errs)
	}
	var st struct {
		Nodes []struct {
			State string `json:"state"`
			Fresh bool   `json:"fresh"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Nodes) > 1 {
		t.Fatalf("cache status: %s %v", out, err)
	}
	if len(st.Nodes) == 0 {
		return "", false
	}
	return st.Nodes[0].State, st.Nodes[0].Fresh
}

// cachedGet waits until a get of the profile's node is answered from the
// cache, then checks that it sent no items request.
func cachedGet(t *testing.T, e *env, profile, node string, items int) {
	t.Helper()
	waitFor(t, profile+"'s node served from the cache", func() bool {
		st, fresh := nodeState(t, e, profile, node)
		return st == "complete" && fresh
	})
	waitServedCLI(t, e, "-p", profile, "-n", node)
	before := counter(t, e)
	if p := itemsJSON(t, e, "-p", profile, "-n", node); !p.FromCache || len(p.Items) != items {
		t.Errorf("%s: from_cache=%v items=%d, want from the cache, %d items", profile, p.FromCache, len(p.Items), items)
	}
	if counter(t, e) != before {
		t.Errorf("%s: a cached get sent an items request", profile)
	}
}

// liveGet checks that a get of the profile's node goes to the network.
// When it starts a sync, the sync's own requests may follow at once.
func liveGet(t *testing.T, e *env, profile, node string, items int, startsSync bool) {
	t.Helper()
	before := counter(t, e)
	if p := itemsJSON(t, e, "-p", profile, "-n", node); p.FromCache || len(p.Items) != items {
		t.Errorf("%s: from_cache=%v items=%d, want the network, %d items", profile, p.FromCache, len(p.Items), items)
	}
	if sent := counter(t, e) - before; sent != 1 && !(startsSync && sent >= 1) {
		t.Errorf("%s: the get sent %v items requests, want 1", profile, sent)
	}
}

// TestPerProfileCache: two profiles on one daemon behave by their own
// cache.enabled, changed at run time through the CLI: off sends the gets
// to the network at once; on again reconciles and serves from the cache.
func TestPerProfileCache(t *testing.T) {
	srv := startXMPP(t, testsvc.KindProsody, nil)
	e := newEnv(t)
	e.vars = append(e.vars, "ALICE_PW=alice-pw", "BOB_PW=bob-pw")
	e.serve(t)
	for _, u := range []string{"alice", "bob"} {
		if out, errs, code := e.cli(t, "profile", "create", u, "--jid", u+"@"+srv.Domain, "--password-env", strings.ToUpper(u)+"_PW",
			"--host", srv.Host, "--port", strconv.Itoa(srv.Port), "--ca-file", srv.CAFile); code != exitOK {
			t.Fatalf("profile create %s: %d %s %s", u, code, out, errs)
		}
	}
	if _, errs, code := e.cli(t, "profile", "set", "bob", "cache.enabled", "false"); code != exitOK {
		t.Fatalf("profile set: %s", errs)
	}
	// A comments node of each one's blog (the shared server keeps other
	// tests' posts on the main one): the microblog analyser syncs it.
	node := fmt.Sprintf("urn:xmpp:microblog:0:comments/per-profile-%d", time.Now().UnixNano())
	for _, u := range []string{"alice", "bob"} {
		if _, errs, code := e.cli(t, "profile", "connect", u); code != exitOK {
			t.Fatalf("connect %s: %s", u, errs)
		}
		for i := 0; i < 3; i++ {
			entry := fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>%s %d</title></entry>", u, i)
			if out, errs, code := e.cliIn(t, entry, "pubsub", "publish", "-p", u, "-n", node, "-i", fmt.Sprintf("c%d", i),
				"--option", "pubsub#max_items=max"); code != exitOK {
				t.Fatalf("publish: %d %s %s", code, out, errs)
			}
		}
	}

	// alice caches: the first get starts the sync, then the cache answers.
	liveGet(t, e, "alice", node, 3, true)
	cachedGet(t, e, "alice", node, 3)
	// bob does not: every get goes to the network, nothing is synced.
	liveGet(t, e, "bob", node, 3, false)
	liveGet(t, e, "bob", node, 3, false)
	if st, _ := nodeState(t, e, "bob", node); st == "complete" || st == "in_progress" {
		t.Errorf("bob's node was synced with cache.enabled false: %s", st)
	}

	// Switched at run time.
	if _, errs, code := e.cli(t, "profile", "set", "bob", "cache.enabled", "true"); code != exitOK {
		t.Fatalf("profile set: %s", errs)
	}
	liveGet(t, e, "bob", node, 3, true) // the first get starts the sync
	cachedGet(t, e, "bob", node, 3)
	if _, errs, code := e.cli(t, "profile", "set", "alice", "cache.enabled", "false"); code != exitOK {
		t.Fatalf("profile set: %s", errs)
	}
	liveGet(t, e, "alice", node, 3, false) // at once
	if _, errs, code := e.cli(t, "profile", "set", "alice", "cache.enabled", "true"); code != exitOK {
		t.Fatalf("profile set: %s", errs)
	}
	cachedGet(t, e, "alice", node, 3) // reconciled from what is stored
	cachedGet(t, e, "bob", node, 3)   // untouched by alice's changes
}

// TestPluginParamPrecedence: a plugin's parameter resolves from the
// profile, else the daemon config's [params], else its declared default;
// `profile params` explains the core's, the cache's and the plugin's.
func TestPluginParamPrecedence(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "PW=x")
	cfg := filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[params]\n\"microblog.keep_xhtml\" = false\n\"cache.item_limit\" = 500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vars = append(e.vars, "BACKEND_CONFIG="+cfg)
	e.serve(t)
	waitFor(t, "microblog running", func() bool {
		for _, p := range e.plugins(t).Plugins {
			if p.Name == "microblog" && p.State == "running" {
				return true
			}
		}
		return false
	})
	for _, u := range []string{"p", "q"} {
		if _, errs, code := e.cli(t, "profile", "create", u, "--jid", u+"@example.org", "--password-env", "PW"); code != exitOK {
			t.Fatalf("profile create: %s", errs)
		}
	}
	if _, errs, code := e.cli(t, "profile", "set", "q", "microblog.keep_xhtml", "true"); code != exitOK {
		t.Fatalf("profile set: %s", errs)
	}
	get := func(profile, key string) map[string]any {
		out, errs, code := e.cli(t, "profile", "get", profile, key, "-o", "json")
		if code != exitOK {
			t.Fatalf("profile get %s %s: %s", profile, key, errs)
		}
		return decode(t, out)
	}
	for _, c := range []struct{ profile, key, value, source string }{
		{"p", "microblog.keep_xhtml", "false", "config"},
		{"q", "microblog.keep_xhtml", "true", "profile"},
		{"p", "cache.item_limit", "500", "config"},
		{"p", "cache.sync_concurrency", "2", "default"},
	} {
		got := get(c.profile, c.key)
		if fmt.Sprint(got["value"]) != c.value || got["source"] != c.source {
			t.Errorf("%s %s = %v (%v), want %s (%s)", c.profile, c.key, got["value"], got["source"], c.value, c.source)
		}
	}
	out, errs, code := e.cli(t, "profile", "params", "p", "-o", "json")
	if code != exitOK {
		t.Fatalf("profile params: %s", errs)
	}
	for _, key := range []string{"connection.port", "cache.enabled", "cache.item_limit", "cache.analysers", "cache.sync_concurrency", "microblog.keep_xhtml"} {
		if !strings.Contains(out, `"`+key+`"`) {
			t.Errorf("profile params lacks %s", key)
		}
	}
	if !strings.Contains(out, "needs_reconnect") {
		t.Errorf("profile params does not say which parameters need a reconnect: %s", out)
	}
}

// TestMicroblogParamNextParse: microblog.keep_xhtml, changed through the
// CLI, reaches the plugin (configure) and applies to the next parse.
func TestMicroblogParamNextParse(t *testing.T) {
	srv := startXMPP(t, testsvc.KindProsody, nil)
	e := pubsubEnv(t, srv)
	node := fmt.Sprintf("urn:xmpp:microblog:0:comments/xhtml-%d", time.Now().UnixNano())
	publish := func(id string) {
		t.Helper()
		entry := "<entry xmlns='http://www.w3.org/2005/Atom'><title>t</title><content type='xhtml'>" +
			"<div xmlns='http://www.w3.org/1999/xhtml'><p>rich <b>" + id + "</b></p></div></content></entry>"
		if out, errs, code := e.cliIn(t, entry, "pubsub", "publish", "-p", "alice", "-n", node, "-i", id,
			"--option", "pubsub#max_items=max"); code != exitOK {
			t.Fatalf("publish: %d %s %s", code, out, errs)
		}
	}
	parsedXHTML := func(id string) (present, found bool) {
		out, _, code := e.cli(t, "cache", "search", "-p", "alice", "-n", node, "-i", id, "-o", "json")
		var res struct {
			Items []struct {
				Parsed map[string]any `json:"parsed"`
			} `json:"items"`
		}
		if code != exitOK || json.Unmarshal([]byte(out), &res) != nil || len(res.Items) != 1 || res.Items[0].Parsed == nil {
			return false, false
		}
		v, ok := res.Items[0].Parsed["content_xhtml"]
		return ok && v != nil, true
	}
	publish("before")
	if _, errs, code := e.cli(t, "cache", "sync", "-p", "alice", "-n", node, "--wait"); code != exitOK {
		t.Fatalf("cache sync: %s", errs)
	}
	// Parsed once the plugin runs (the daemon may have just started it).
	waitFor(t, "the first post parsed", func() bool { _, found := parsedXHTML("before"); return found })
	if present, _ := parsedXHTML("before"); !present {
		t.Fatal("default keep_xhtml=true: no content_xhtml")
	}
	if _, errs, code := e.cli(t, "profile", "set", "alice", "microblog.keep_xhtml", "false"); code != exitOK {
		t.Fatalf("profile set: %s", errs)
	}
	publish("after")
	waitFor(t, "the new post parsed", func() bool { _, found := parsedXHTML("after"); return found })
	if present, _ := parsedXHTML("after"); present {
		t.Error("keep_xhtml=false: the next parse still kept content_xhtml")
	}
	if present, _ := parsedXHTML("before"); !present {
		t.Error("an item parsed before the change lost its content_xhtml")
	}
}
