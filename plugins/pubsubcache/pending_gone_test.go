package pubsubcache

import (
	"testing"
	"time"

	"example.org/backend/plugins/xep0060"
)

// TestPublishGoneBeforeRefetch: an own publish whose notification does not
// come and whose item is no longer on the service when it is fetched by id
// (retracted, or dropped, meanwhile) does not keep the node off the cache:
// the fetch's answer, without it, ends its wait.
func TestPublishGoneBeforeRefetch(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			f, svc, node := cachedNode(t, kind, 3)
			k := nodeKey{"alice", svc, node}
			f.cache.pubs.published(&xep0060.PublishedEvent{Profile: "alice", Service: svc, Node: node, ID: "gone-meanwhile", Sent: time.Now()})
			if !f.cache.pubs.has(k) {
				t.Fatal("the publish does not wait for its copy")
			}
			for deadline := time.Now().Add(f.cache.pendingTimeout + 15*time.Second); f.cache.pubs.has(k); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					st, _ := f.cache.Status(ctxT(t), "alice", svc, node)
					t.Fatalf("the publish still waits %v after it was answered: %+v", f.cache.pendingTimeout+15*time.Second, st)
				}
			}
			f.waitServed(t, "alice", svc, node)
		})
	}
}
