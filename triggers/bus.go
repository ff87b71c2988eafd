package triggers

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Bus holds the handlers attached to points and events. Dispatch (Run,
// Notify) is lock-free: it reads an immutable snapshot; Attach and removal
// copy the snapshot under a mutex and publish the copy.
//
// The zero Bus is empty and ready to use; a Bus must not be copied after
// first use.
type Bus struct {
	mu   sync.Mutex // serialises writers
	seq  uint64     // last attach sequence number, under mu
	snap atomic.Pointer[snapshot]
	obs  atomic.Pointer[observerBox] // SetObserver
}

// snapshot is an immutable view of every chain, indexed by pointMeta.idx.
// A nil entry, or an index past the end, means no handler.
type snapshot struct {
	chains []chainer
}

// New returns an empty bus.
func New() *Bus { return &Bus{} }

// load returns the current chains (nil for an empty bus).
func (b *Bus) load() []chainer {
	if s := b.snap.Load(); s != nil {
		return s.chains
	}
	return nil
}

// Handle is returned by Attach; Remove detaches the bindings it attached.
type Handle struct {
	bus     *Bus
	owner   string
	refs    []handleRef
	removed bool // under bus.mu
}

type handleRef struct {
	idx int
	seq uint64
}

// Attach registers the bindings for owner (a non-empty name, usually the
// plugin's). All or nothing: on error nothing is attached. It is an error
// (ErrDuplicateBinding) for owner to bind a point it already binds, in this
// call or an earlier one; a nil binding, point or handler is an error too
// (ErrInvalidBinding).
//
// Attach may be called at any time, also from a handler: a dispatch already
// in progress keeps the chain it started with.
func (b *Bus) Attach(owner string, bs ...Binding) (*Handle, error) {
	if owner == "" {
		return nil, fmt.Errorf("triggers: attach: empty owner: %w", ErrInvalidBinding)
	}
	for i, bd := range bs {
		if bd == nil {
			return nil, fmt.Errorf("triggers: attach %s: binding %d: nil: %w", owner, i, ErrInvalidBinding)
		}
		if err := bd.check(); err != nil {
			return nil, fmt.Errorf("triggers: attach %s: binding %d: %w", owner, i, err)
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.load()
	n := len(old)
	for i, bd := range bs {
		m := bd.meta()
		if m.idx < len(old) && old[m.idx] != nil && old[m.idx].hasOwner(owner) {
			return nil, fmt.Errorf("triggers: attach %s: %s already bound by this owner: %w", owner, m.id, ErrDuplicateBinding)
		}
		for _, prev := range bs[:i] {
			if prev.meta() == m {
				return nil, fmt.Errorf("triggers: attach %s: %s bound twice: %w", owner, m.id, ErrDuplicateBinding)
			}
		}
		n = max(n, m.idx+1)
	}

	chains := make([]chainer, n)
	copy(chains, old)
	h := &Handle{bus: b, owner: owner, refs: make([]handleRef, 0, len(bs))}
	for _, bd := range bs {
		m := bd.meta()
		b.seq++
		chains[m.idx] = bd.insert(chains[m.idx], HandlerInfo{Owner: owner, Seq: b.seq})
		h.refs = append(h.refs, handleRef{idx: m.idx, seq: b.seq})
	}
	b.snap.Store(&snapshot{chains: chains})
	return h, nil
}

// Owner returns the owner the handle's bindings were attached for.
func (h *Handle) Owner() string { return h.owner }

// Remove detaches the bindings attached by the call that returned h. It is
// idempotent, safe on a nil handle, and never affects a dispatch in progress.
func (h *Handle) Remove() {
	if h == nil || h.bus == nil {
		return
	}
	b := h.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.removed {
		return
	}
	h.removed = true
	b.removeLocked(func(idx int, in HandlerInfo) bool {
		for _, r := range h.refs {
			if r.idx == idx && r.seq == in.Seq {
				return true
			}
		}
		return false
	})
}

// DetachOwner removes every binding of owner (attached by any number of
// Attach calls) and returns how many it removed. Handles of owner become
// no-ops.
func (b *Bus) DetachOwner(owner string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.removeLocked(func(_ int, in HandlerInfo) bool { return in.Owner == owner })
}

// removeLocked publishes a snapshot without the handlers for which drop is
// true and returns how many were dropped. The caller holds b.mu.
func (b *Bus) removeLocked(drop func(idx int, in HandlerInfo) bool) int {
	old := b.load()
	var chains []chainer // copied on the first change
	total := 0
	for idx, c := range old {
		if c == nil {
			continue
		}
		nc, n := c.without(func(in HandlerInfo) bool { return drop(idx, in) })
		if n == 0 {
			continue
		}
		if chains == nil {
			chains = slices.Clone(old)
		}
		chains[idx] = nc
		total += n
	}
	if chains != nil {
		b.snap.Store(&snapshot{chains: chains})
	}
	return total
}

// HandlerInfo describes one handler of a resolved chain.
type HandlerInfo struct {
	Owner    string   `json:"owner"`
	Priority Priority `json:"priority"`
	// Seq is the bus-wide attach sequence number: it breaks priority ties.
	Seq uint64 `json:"seq"`
}

// ChainInfo describes the resolved chain of one point or event.
type ChainInfo struct {
	Point    string        `json:"point"`
	Kind     string        `json:"kind"` // KindIntercept or KindObserve
	Doc      string        `json:"doc"`
	Handlers []HandlerInfo `json:"handlers"` // in dispatch order, never nil
}

// Chains returns the resolved chain of every declared point and event (in
// this process, whether or not anything is attached on b), sorted by id.
// Handlers are listed in dispatch order. It is for introspection
// (`backend triggers list`) and reads one consistent snapshot.
func (b *Bus) Chains() []ChainInfo {
	metas := declared()
	var chains []chainer
	if b != nil {
		chains = b.load()
	}
	out := make([]ChainInfo, 0, len(metas))
	for _, m := range metas {
		ci := ChainInfo{Point: m.id, Kind: m.kind, Doc: m.doc, Handlers: []HandlerInfo{}}
		if m.idx < len(chains) && chains[m.idx] != nil {
			ci.Handlers = slices.Clone(chains[m.idx].handlers())
		}
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b ChainInfo) int { return strings.Compare(a.Point, b.Point) })
	return out
}

// Chain returns the resolved chain of the point or event id, like Chains.
func (b *Bus) Chain(id string) (ChainInfo, bool) {
	registry.mu.Lock()
	m, ok := registry.byID[id]
	registry.mu.Unlock()
	if !ok {
		return ChainInfo{}, false
	}
	ci := ChainInfo{Point: m.id, Kind: m.kind, Doc: m.doc, Handlers: []HandlerInfo{}}
	if b != nil {
		if chains := b.load(); m.idx < len(chains) && chains[m.idx] != nil {
			ci.Handlers = slices.Clone(chains[m.idx].handlers())
		}
	}
	return ci, true
}
