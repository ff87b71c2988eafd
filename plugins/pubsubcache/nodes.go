package pubsubcache

import (
	"slices"
	"strings"
	"sync"
)

// nodeTable holds the state of every node the cache knows (the memory copy
// of the pubsub_nodes rows, all loaded at start). Only the writer changes
// it, after the transaction that wrote the rows committed (writer.inTx);
// anyone reads it. Its lock guards the map only and is never held across
// I/O.
type nodeTable struct {
	mu sync.RWMutex
	m  map[nodeKey]nodeInfo
}

func newNodeTable() *nodeTable { return &nodeTable{m: map[nodeKey]nodeInfo{}} }

// get returns the node's state (ok false: the cache knows nothing of it).
func (t *nodeTable) get(k nodeKey) (nodeInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n, ok := t.m[k]
	return n, ok
}

// byID returns the key of the node whose row id is id.
func (t *nodeTable) byID(id int) (nodeKey, nodeInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, n := range t.m {
		if n.id == id {
			return k, n, true
		}
	}
	return nodeKey{}, nodeInfo{}, false
}

// keys returns the keys of the nodes for which keep is true (all when keep
// is nil), sorted by profile, service and node.
func (t *nodeTable) keys(keep func(nodeKey, nodeInfo) bool) []nodeKey {
	t.mu.RLock()
	var out []nodeKey
	for k, n := range t.m {
		if keep == nil || keep(k, n) {
			out = append(out, k)
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b nodeKey) int {
		if c := strings.Compare(a.profile, b.profile); c != 0 {
			return c
		}
		if c := strings.Compare(a.service, b.service); c != 0 {
			return c
		}
		return strings.Compare(a.node, b.node)
	})
	return out
}

// ofProfile is a keys filter: the nodes of one profile.
func ofProfile(name string) func(nodeKey, nodeInfo) bool {
	return func(k nodeKey, _ nodeInfo) bool { return k.profile == name }
}

// publish applies committed changes (nil: the row is gone). Writer only.
func (t *nodeTable) publish(changes map[nodeKey]*nodeInfo) {
	if len(changes) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, n := range changes {
		if n == nil {
			delete(t.m, k)
		} else {
			t.m[k] = *n
		}
	}
}

// replace sets the whole table. Writer only.
func (t *nodeTable) replace(m map[nodeKey]nodeInfo) {
	t.mu.Lock()
	t.m = m
	t.mu.Unlock()
}
