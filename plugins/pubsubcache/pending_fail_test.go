package pubsubcache

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/plugins/xep0060"
)

// unfetchableID names an item whose fetch fails.
const unfetchableID = "unfetchable"

// TestRefetchFailedNotServed: an own publish whose notification does not
// come and whose fetch by id fails stops waiting only once its node is not
// fresh: never is the node answered from the cache, as fresh, without
// the item in between (the wait ended first, the node made not fresh by a
// write queued after it).
func TestRefetchFailedNotServed(t *testing.T) {
	// A request naming unfetchableID fails (counted).
	var failed atomic.Int64
	u := &iqSessions{}
	u.set(func(ctx context.Context, x core.XMPP, profile, to, typ, payloadXML string) (*stanza.IQ, error) {
		if strings.Contains(payloadXML, unfetchableID) {
			failed.Add(1)
			return nil, errors.New("service unavailable (test)")
		}
		return x.SendIQRaw(ctx, to, typ, payloadXML)
	})
	f := newFixture(t, servers.Use(t, "prosody"), fixtureOpts{sessions: u.wrap}, "alice")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 3)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.waitServed(t, "alice", svc, node)
	k := nodeKey{"alice", svc, node}

	// The writer busy (held) when the fetch fails.
	entered, release := make(chan struct{}), make(chan struct{})
	go f.cache.w.run(ctx, func(context.Context, *wtx) error { close(entered); <-release; return nil })
	<-entered
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	f.cache.pubs.published(&xep0060.PublishedEvent{Profile: "alice", Service: svc, Node: node, ID: unfetchableID, Sent: time.Now()})
	for deadline := time.Now().Add(f.cache.pendingTimeout + 15*time.Second); failed.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the published item was never fetched")
		}
	}
	for deadline := time.Now().Add(500 * time.Millisecond); f.cache.pubs.has(k) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	req := &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node}
	why := f.cache.explain(req)
	if strings.HasPrefix(why, "hit") {
		t.Errorf("after the fetch by id failed, the node is answered from the cache without the item: %s", why)
	}
	close(release)
	released = true
	// Once the node is not fresh, the publish no longer waits.
	for deadline := time.Now().Add(10 * time.Second); f.cache.pubs.has(k); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the publish still waits after its node was made not fresh")
		}
	}
}
