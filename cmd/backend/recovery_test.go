package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/internal/testsvc"
)

// TestCacheSyncAfterKill9: the daemon is killed (SIGKILL) while a node is
// being synced; the partly synced node is never served as complete, and
// the sync starts again when the profile connects after the restart.
func TestCacheSyncAfterKill9(t *testing.T) {
	srv := startXMPP(t, testsvc.KindEjabberd, nil)
	e := newEnv(t)
	e.vars = append(e.vars, "ALICE_PW=alice-pw")
	cmd, exited, _, _ := e.serve(t)
	if out, errs, code := e.cli(t, "profile", "create", "alice", "--jid", "alice@"+srv.Domain, "--password-env", "ALICE_PW",
		"--host", srv.Host, "--port", strconv.Itoa(srv.Port), "--ca-file", srv.CAFile, "--autoconnect"); code != exitOK {
		t.Fatalf("profile create: %d %s %s", code, out, errs)
	}
	if _, errs, code := e.cli(t, "profile", "connect", "alice"); code != exitOK {
		t.Fatalf("connect: %s", errs)
	}
	node := fmt.Sprintf("urn:test:kill9-%d", time.Now().UnixNano())
	if out, errs, code := e.cli(t, "pubsub", "node", "create", "-p", "alice", "-s", srv.PubSub, "-n", node,
		"--option", "pubsub#max_items=max"); code != exitOK {
		t.Fatalf("node create: %d %s %s", code, out, errs)
	}
	// 3 000 items (12 RSM pages): published through the API, 8 at a time.
	const n = 3000
	api := backendv1connect.NewPubSubServiceClient(unixHTTP(e.socket), "http://backend")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				_, err := api.Publish(context.Background(), connect.NewRequest(&backendv1.PubSubPublishRequest{Profile: "alice", Service: srv.PubSub,
					Node: node, Id: fmt.Sprintf("k%04d", i), Payload: fmt.Appendf(nil, "<k xmlns='urn:test:k'>%d</k>", i)}))
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("publish: %v", err)
	default:
	}
	go e.cli(t, "cache", "sync", "-p", "alice", "-s", srv.PubSub, "-n", node)
	waitFor(t, "the sync to be in progress", func() bool {
		st, _ := nodeStateOn(t, e, "alice", srv.PubSub, node)
		return st == "in_progress"
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	// Restarted on the same data: the node is not served as complete
	// before its sync has run again, then is complete with every item.
	e.serve(t)
	waitFor(t, "the interrupted sync to finish after the restart", func() bool {
		st, fresh := nodeStateOn(t, e, "alice", srv.PubSub, node)
		if st == "complete" && fresh {
			return true
		}
		if st != "in_progress" && st != "never" && st != "" {
			t.Fatalf("node state after the restart: %s", st)
		}
		return false
	})
	out, _, _ := e.cli(t, "cache", "status", "-p", "alice", "-s", srv.PubSub, "-n", node, "-o", "json")
	if m := decode(t, out); m["nodes"].([]any)[0].(map[string]any)["items"] != float64(n) {
		t.Fatalf("after the restart: %s", out)
	}
	waitServedCLI(t, e, "-s", srv.PubSub, "-n", node)
	before := counter(t, e)
	if p := itemsJSON(t, e, "-s", srv.PubSub, "-n", node); !p.FromCache || len(p.Items) != n {
		t.Errorf("served: from_cache=%v items=%d", p.FromCache, len(p.Items))
	}
	if counter(t, e) != before {
		t.Error("a cached get sent an items request")
	}
}

// nodeStateOn is nodeState for a node of another service.
func nodeStateOn(t *testing.T, e *env, profile, service, node string) (string, bool) {
	t.Helper()
	out, _, code := e.cli(t, "cache", "status", "-p", profile, "-s", service, "-n", node, "-o", "json")
	if code != exitOK {
		return "", false
	}
	m := decode(t, out)
	nodes, _ := m["nodes"].([]any)
	if len(nodes) != 1 {
		return "", false
	}
	st := nodes[0].(map[string]any)
	fresh, _ := st["fresh"].(bool)
	s, _ := st["state"].(string)
	return s, fresh
}
