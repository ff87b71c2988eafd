package main

import (
	"fmt"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// TestJIDVerified: a post's author.jid_verified (the microblog parser,
// through the daemon) is true for the owner's own posts on both paths —
// synced from an items answer (Prosody puts no publisher there: the node
// is a PEP node where only its owner publishes) and notified — and false
// for a post whose author names someone else, on both servers.
func TestJIDVerified(t *testing.T) {
	for _, kind := range []string{testsvc.KindProsody, testsvc.KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			srv := startXMPP(t, kind, nil)
			e := pubsubEnvAs(t, srv, "dave", "dave-pw")
			waitFor(t, "microblog running", func() bool { return microblogRunning(t, e) })
			owner := "dave@" + srv.Domain
			node := fmt.Sprintf("urn:xmpp:microblog:0:jid-%d", time.Now().UnixNano())
			if out, errs, code := e.cli(t, "pubsub", "node", "create", "-p", "alice", "-n", node, "--option", "pubsub#max_items=100", "-o", "json"); code != exitOK {
				t.Fatalf("node create: %d %s %s", code, out, errs)
			}
			post := func(id, author string) {
				t.Helper()
				payload := fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>%s</title><content>text of %s</content><author><name>A</name><uri>xmpp:%s</uri></author></entry>", id, id, author)
				if out, errs, code := e.cliIn(t, payload, "pubsub", "publish", "-p", "alice", "-n", node, "-i", id, "-o", "json"); code != exitOK {
					t.Fatalf("publish %s: %d %s %s", id, code, out, errs)
				}
			}
			// Items answer: published before the sync.
			post("own-synced", owner)
			post("forged-synced", "mallory@evil.example")
			if out, errs, code := e.cli(t, "cache", "sync", "-p", "alice", "-n", node, "--wait", "-o", "json"); code != exitOK {
				t.Fatalf("cache sync: %d %s %s", code, out, errs)
			}
			// Notifications: published after it.
			post("own-notified", owner)
			post("forged-notified", "mallory@evil.example")
			want := map[string]bool{"own-synced": true, "forged-synced": false, "own-notified": true, "forged-notified": false}
			var got map[string]any
			waitFor(t, "the four posts parsed", func() bool {
				got = map[string]any{}
				for _, it := range searchCLI(t, e, "-n", node).Items {
					got[it.ID] = field(it.Parsed, "author.jid_verified")
				}
				return len(got) == 4 && got["own-notified"] != nil && got["forged-notified"] != nil
			})
			for id, w := range want {
				if got[id] != w {
					t.Errorf("%s: jid_verified %v, want %v (all: %v)", id, got[id], w, got)
				}
			}
		})
	}
}
