package triggers

import "fmt"

// Binding is one handler bound to one point at one priority. Plugins declare
// their bindings as values (Intercept, Observe); the bus attaches them for an
// owner (Bus.Attach) and removes them together when the owner stops.
type Binding interface {
	meta() *pointMeta
	check() error
	// insert returns a new chain: old (which it never modifies) plus the
	// handler, at its place in the order.
	insert(old chainer, info HandlerInfo) chainer
}

// Intercept binds h to the interceptor point p at priority prio.
// A nil p (or one not made by NewPoint) or a nil h is reported by Attach.
func Intercept[Req, Res any](p *Point[Req, Res], prio Priority, h Handler[Req, Res]) Binding {
	b := &binding[Handler[Req, Res]]{prio: prio, h: h}
	switch {
	case p == nil || p.m == nil:
		b.err = fmt.Errorf("nil or undeclared point: %w", ErrInvalidBinding)
	case h == nil:
		b.m = p.m
		b.err = fmt.Errorf("nil handler for %s: %w", p.m.id, ErrInvalidBinding)
	default:
		b.m = p.m
	}
	return b
}

// Observe binds h to the observer point e at priority prio.
// A nil e (or one not made by NewEvent) or a nil h is reported by Attach.
func Observe[Req any](e *Event[Req], prio Priority, h ObserverFunc[Req]) Binding {
	b := &binding[ObserverFunc[Req]]{prio: prio, h: h}
	switch {
	case e == nil || e.m == nil:
		b.err = fmt.Errorf("nil or undeclared event: %w", ErrInvalidBinding)
	case h == nil:
		b.m = e.m
		b.err = fmt.Errorf("nil observer for %s: %w", e.m.id, ErrInvalidBinding)
	default:
		b.m = e.m
	}
	return b
}

// binding implements Binding for a handler type H (Handler or ObserverFunc).
type binding[H any] struct {
	m    *pointMeta
	prio Priority
	h    H
	err  error // set by the constructor for an invalid binding
}

func (b *binding[H]) meta() *pointMeta { return b.m }
func (b *binding[H]) check() error     { return b.err }

func (b *binding[H]) insert(old chainer, info HandlerInfo) chainer {
	info.Priority = b.prio
	var hs []H
	var infos []HandlerInfo
	if old != nil {
		oc := old.(*chain[H])
		hs, infos = oc.hs, oc.infos
	}
	// Sequence numbers grow, so the new handler goes after every handler of
	// the same or a higher priority: descending priority, ties in attach order.
	at := len(infos)
	for i, in := range infos {
		if in.Priority < b.prio {
			at = i
			break
		}
	}
	c := &chain[H]{
		hs:    make([]H, 0, len(hs)+1),
		infos: make([]HandlerInfo, 0, len(infos)+1),
	}
	c.hs = append(append(append(c.hs, hs[:at]...), b.h), hs[at:]...)
	c.infos = append(append(append(c.infos, infos[:at]...), info), infos[at:]...)
	return c
}

// chainer is the untyped view of a chain, for the bus's writers and
// introspection. Chains are immutable once published.
type chainer interface {
	handlers() []HandlerInfo
	hasOwner(owner string) bool
	// without returns a new chain without the handlers for which drop is
	// true (nil when none is left) and how many it dropped. It returns the
	// receiver itself when nothing is dropped.
	without(drop func(HandlerInfo) bool) (chainer, int)
}

// chain is the resolved, ordered list of handlers of one point.
// hs and infos are parallel slices; hs is kept apart for a tight dispatch loop.
type chain[H any] struct {
	hs    []H
	infos []HandlerInfo
}

func (c *chain[H]) handlers() []HandlerInfo { return c.infos }

func (c *chain[H]) hasOwner(owner string) bool {
	for _, in := range c.infos {
		if in.Owner == owner {
			return true
		}
	}
	return false
}

func (c *chain[H]) without(drop func(HandlerInfo) bool) (chainer, int) {
	n := 0
	for _, in := range c.infos {
		if drop(in) {
			n++
		}
	}
	switch n {
	case 0:
		return c, 0
	case len(c.infos):
		return nil, n
	}
	nc := &chain[H]{
		hs:    make([]H, 0, len(c.hs)-n),
		infos: make([]HandlerInfo, 0, len(c.infos)-n),
	}
	for i, in := range c.infos {
		if !drop(in) {
			nc.hs = append(nc.hs, c.hs[i])
			nc.infos = append(nc.infos, in)
		}
	}
	return nc, n
}
