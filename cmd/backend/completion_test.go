package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"example.org/backend/core/storage"
)

// complete runs the shell completion of args (the last one being the word
// to complete) and returns the candidates.
func complete(t *testing.T, e *env, args ...string) []string {
	t.Helper()
	out, errs, code := e.cli(t, append([]string{"__complete"}, args...)...)
	if code != exitOK {
		t.Fatalf("__complete %v: %d %s %s", args, code, out, errs)
	}
	var cands []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") {
			cands = append(cands, l)
		}
	}
	return cands
}

// TestDynamicCompletion completes profile names, parameter keys and
// values, cached nodes and types from a running daemon, and parameter keys
// without one.
func TestDynamicCompletion(t *testing.T) {
	e := newEnv(t)
	if got := strings.Join(complete(t, e, "profile", "get", "alice", "cache.e"), " "); got != "cache.enabled" {
		t.Errorf("keys without a daemon: %q", got)
	}
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{DataDir: filepath.Join(e.dir, "data", "backend")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := st.Client
	for _, name := range []string{"alice", "albert", "bob"} {
		p := c.Profile.Create().SetName(name).SetJid(name + "@example.org").SaveX(ctx)
		if name == "alice" {
			c.PubsubNode.Create().SetProfile(p).SetService("alice@example.org").SetName("urn:xmpp:microblog:0").SetType("blog").SaveX(ctx)
			c.PubsubNode.Create().SetProfile(p).SetService("pubsub.example.org").SetName("events").SetType("event").SaveX(ctx)
		}
	}
	st.Close()
	e.serve(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"profile", "show", "al"}, "albert alice"},
		{[]string{"profile", "connect", ""}, "albert alice bob"},
		{[]string{"profile", "set", "alice", "connection.tls"}, "connection.tls_verify"},
		{[]string{"profile", "set", "alice", "connection.tls_verify", ""}, "false true"},
		{[]string{"profile", "set", "alice", "connection.password", ""}, "-"},
		{[]string{"pubsub", "items", "-p", ""}, "albert alice bob"},
		{[]string{"pubsub", "items", "-p", "alice", "-n", ""}, "events urn:xmpp:microblog:0"},
		{[]string{"cache", "get", "-p", "bob", "-n", ""}, ""},
		{[]string{"cache", "search", "-t", ""}, "blog event"},
		{[]string{"cache", "status", "-s", "pub"}, "pubsub.example.org"},
		{[]string{"plugins", "restart", ""}, "microblog pep"},
	} {
		if got := strings.Join(complete(t, e, tc.args...), " "); got != tc.want {
			t.Errorf("complete %v = %q, want %q", tc.args, got, tc.want)
		}
	}
	if out, _, code := e.cli(t, "completion", "bash"); code != exitOK || !strings.Contains(out, "__start_backend") {
		t.Errorf("completion bash: %d", code)
	}
}
