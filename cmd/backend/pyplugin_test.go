package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/internal/testsvc"
)

// parsedNote is what the Python test plugin's notes parser stores.
type parsedNote struct {
	Text   string  `json:"text"`
	PID    float64 `json:"pid"`
	Prefix string  `json:"prefix"`
}

// notesOf returns the cached items of node by id, their parsed data nil
// while pending.
func notesOf(t *testing.T, e *env, node string) map[string]*parsedNote {
	t.Helper()
	out, errs, code := e.cli(t, "cache", "search", "-p", "alice", "-n", node, "-o", "json")
	var found struct {
		Items []cacheItemJSON `json:"items"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &found) != nil {
		t.Fatalf("cache search: %d %s %s", code, out, errs)
	}
	notes := map[string]*parsedNote{}
	for _, it := range found.Items {
		var n *parsedNote
		if err := json.Unmarshal(it.Parsed, &n); err != nil {
			t.Fatalf("item %s parsed = %s: %v", it.ID, it.Parsed, err)
		}
		notes[it.ID] = n
	}
	return notes
}

// waitParsed waits until the n items of node are parsed by process pid
// with the profile's prefix.
func waitParsed(t *testing.T, e *env, node string, n int, pid int64, prefix string) {
	t.Helper()
	waitParsedBy(t, e, node, n, pid, prefix, 0, 0)
}

// waitParsedBy waits until n items of node are parsed: every one by pid,
// except at most others by pid other.
func waitParsedBy(t *testing.T, e *env, node string, n int, pid int64, prefix string, other int64, others int) {
	t.Helper()
	var notes map[string]*parsedNote
	waitFor(t, fmt.Sprintf("%d items of %s parsed by pid %d", n, node, pid), func() bool {
		notes = notesOf(t, e, node)
		if len(notes) != n {
			return false
		}
		byOther := 0
		for _, p := range notes {
			if p == nil || p.Prefix != prefix || !strings.HasPrefix(p.Text, "note ") {
				return false
			}
			switch int64(p.PID) {
			case pid:
			case other:
				byOther++
			default:
				return false
			}
		}
		return byOther <= others
	})
}

func (e *env) plugin(t *testing.T, name string) pluginJSON {
	t.Helper()
	for _, p := range e.plugins(t).Plugins {
		if p.Name == name {
			return p
		}
	}
	return pluginJSON{}
}

// publishNotes publishes n notes on node through the API.
func publishNotes(t *testing.T, e *env, node string, n int) {
	t.Helper()
	api := backendv1connect.NewPubSubServiceClient(unixHTTP(e.socket), "http://backend")
	for i := range n {
		_, err := api.Publish(context.Background(), connect.NewRequest(&backendv1.PubSubPublishRequest{Profile: "alice", Node: node,
			Id: fmt.Sprintf("n%03d", i), Payload: fmt.Appendf(nil, "<note xmlns='urn:test:pynotes'>note %d</note>", i),
			Options: []*backendv1.PubSubOption{{Var: "pubsub#max_items", Value: "max"}}}))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// TestPythonPlugin: a plugin written with the Python SDK, packed into the
// daemon's plugin directory, is discovered and supervised by the daemon
// like any plugin: listed, its parameters declared per profile, its parser
// used by the cache. Killed (SIGKILL) in the middle of a batch, it is
// restarted and every item is parsed by the new process; while it cannot
// run, synced items are stored and served with their parsing pending, and
// parsed once it is back.
func TestPythonPlugin(t *testing.T) {
	srv := startXMPP(t, testsvc.KindProsody, nil)
	// The directory and file rules of plugin discovery: owned by the
	// daemon's user, 0700 and 0755.
	dir, err := os.MkdirTemp("", "bcpy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := testsvc.PackPythonPlugin(t, "plugin-sdk/python/tests/testplugin.py", dir, "pytest")
	e := pubsubEnv(t, srv, "BACKEND_PLUGINS_DIRS="+dir)

	var first pluginJSON
	waitFor(t, "the Python plugin running", func() bool {
		first = e.plugin(t, "pytest")
		return first.State == "running" && first.PID != nil
	})
	if first.Version != "2.3.4" || first.FirstParty || strings.Join(first.Analysers, ",") != "pytest-echo,pytest-notes,pytest-match,pytest-atom" || !alive(*first.PID) {
		t.Fatalf("plugins list: %+v", first)
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", *first.PID)); !strings.Contains(string(cmdline), path) {
		t.Errorf("pid %d runs %q, not the plugin file", *first.PID, cmdline)
	}
	out, _, code := e.cli(t, "profile", "get", "alice", "pytest.delay_ms", "-o", "json")
	if code != exitOK || !strings.Contains(out, `"source":"default"`) || !strings.Contains(out, `"type":"int"`) {
		t.Errorf("the plugin's parameter: %d %s", code, out)
	}
	if _, _, code := e.cli(t, "profile", "set", "alice", "pytest.delay_ms", "60001"); code != exitFailed {
		t.Errorf("a value above the declared maximum was accepted: exit %d", code)
	}
	// 10 ms per item: a 100-item batch lasts a second, time to kill it.
	for k, v := range map[string]string{"pytest.delay_ms": "10", "pytest.prefix": "py"} {
		if _, errs, code := e.cli(t, "profile", "set", "alice", k, v); code != exitOK {
			t.Fatalf("profile set %s: %s", k, errs)
		}
	}

	// SIGKILL in the middle of a parse batch of a sync.
	node := fmt.Sprintf("urn:test:pynotes:killed-%d", time.Now().UnixNano())
	const n = 120
	publishNotes(t, e, node, n)
	done := make(chan string, 1)
	go func() {
		out, errs, code := e.cli(t, "cache", "sync", "-p", "alice", "-n", node, "--wait", "-o", "json")
		done <- fmt.Sprintf("%d %s %s", code, out, errs)
	}()
	waitFor(t, "a parse batch in the plugin", func() bool { return strings.Contains(e.logs.String(), "parsing notes") })
	if err := syscall.Kill(int(*first.PID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if res := <-done; !strings.HasPrefix(res, "0 ") || !strings.Contains(res, `"state":"complete"`) {
		t.Fatalf("cache sync: %s", res)
	}
	var second pluginJSON
	waitFor(t, "the Python plugin restarted", func() bool {
		second = e.plugin(t, "pytest")
		return second.State == "running" && second.PID != nil && *second.PID != *first.PID && second.Restarts >= 1
	})
	// Every item parsed, by the new process, configured again: none of the
	// killed batch (a second long) by the killed one. (The last item,
	// which the server sends again on subscription, may have been parsed
	// before that batch.)
	waitParsedBy(t, e, node, n, *second.PID, "py", *first.PID, 1)
	waitServedCLI(t, e, "-n", node)
	before := counter(t, e)
	if p := itemsJSON(t, e, "-n", node); !p.FromCache || len(p.Items) != n {
		t.Errorf("served after the kill: from_cache=%v items=%d", p.FromCache, len(p.Items))
	}
	if counter(t, e) != before {
		t.Error("a cached get sent an items request")
	}

	// Down for good (its file gone): items are stored and served, their
	// parsing pending; back, they are parsed.
	if _, errs, code := e.cli(t, "profile", "set", "alice", "pytest.delay_ms", "0"); code != exitOK {
		t.Fatal(errs)
	}
	if err := os.Rename(path, path+".off"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(*second.PID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Python plugin failed", func() bool { return e.plugin(t, "pytest").State == "failed" })
	down := fmt.Sprintf("urn:test:pynotes:down-%d", time.Now().UnixNano())
	const m = 20
	publishNotes(t, e, down, m)
	if out, errs, code := e.cli(t, "cache", "sync", "-p", "alice", "-n", down, "--wait", "-o", "json"); code != exitOK || !strings.Contains(out, `"items":20`) {
		t.Fatalf("sync while the plugin is down: %d %s %s", code, out, errs)
	}
	notes := notesOf(t, e, down)
	for id, p := range notes {
		if p != nil {
			t.Errorf("item %s parsed while its parser was down: %+v", id, p)
		}
	}
	waitServedCLI(t, e, "-n", down)
	if p := itemsJSON(t, e, "-n", down); !p.FromCache || len(p.Items) != m || len(notes) != m {
		t.Errorf("served while the plugin is down: from_cache=%v items=%d, %d in the cache", p.FromCache, len(p.Items), len(notes))
	}
	if err := os.Rename(path+".off", path); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := e.cli(t, "plugins", "restart", "pytest"); code != exitOK {
		t.Fatalf("plugins restart: %d %s %s", code, out, errs)
	}
	third := e.plugin(t, "pytest")
	if third.State != "running" || third.PID == nil {
		t.Fatalf("after plugins restart: %+v", third)
	}
	waitParsed(t, e, down, m, *third.PID, "py")

}
