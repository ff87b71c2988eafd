package triggers

import (
	"fmt"
	"sync"
)

// Kinds of points, as reported in ChainInfo.Kind.
const (
	KindIntercept = "intercept" // a Point: cancellable chain of interceptors
	KindObserve   = "observe"   // an Event: observers that cannot cancel
)

// maxIDLen bounds the length of a point id.
const maxIDLen = 128

// pointMeta is the untyped description of a declared point or event.
type pointMeta struct {
	idx  int // position in registry.all and in every bus snapshot
	id   string
	doc  string
	kind string
}

// registry is the process-wide catalogue of declared points and events.
// Ids are unique across both kinds. Entries are never removed: points are
// declared once, usually as package-level variables.
var registry struct {
	mu   sync.Mutex
	byID map[string]*pointMeta
	all  []*pointMeta
}

// declare registers a new point id and gives it the next index.
// It panics on an invalid or duplicate id: both are programming errors.
func declare(id, doc, kind string) *pointMeta {
	if err := ValidateID(id); err != nil {
		panic(err)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.byID == nil {
		registry.byID = make(map[string]*pointMeta)
	}
	if prev, ok := registry.byID[id]; ok {
		panic(fmt.Sprintf("triggers: point %q declared twice (already an %s point)", id, prev.kind))
	}
	m := &pointMeta{idx: len(registry.all), id: id, doc: doc, kind: kind}
	registry.byID[id] = m
	registry.all = append(registry.all, m)
	return m
}

// declared returns a copy of the registry's list of points.
func declared() []*pointMeta {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return append([]*pointMeta(nil), registry.all...)
}

// ValidateID reports whether id is a valid point id: 1 to 128 bytes of
// dot-separated, non-empty segments made of lowercase ASCII letters, digits,
// '_' and '-', starting with a letter (e.g. "pubsub.items.get").
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("triggers: empty point id")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("triggers: point id %q longer than %d bytes", id, maxIDLen)
	}
	if c := id[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("triggers: point id %q must start with a lowercase letter", id)
	}
	segStart := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c == '.':
			if segStart {
				return fmt.Errorf("triggers: point id %q has an empty segment", id)
			}
			segStart = true
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("triggers: point id %q: invalid character %q at %d", id, c, i)
		}
		segStart = false
	}
	if segStart {
		return fmt.Errorf("triggers: point id %q has an empty segment", id)
	}
	return nil
}

// Point is an interceptor point: a named, typed place in a workflow where
// handlers run in priority order and may continue, cancel, answer or skip
// the rest (see Run). Declare points once, as package-level variables of the
// package that owns the workflow.
type Point[Req, Res any] struct {
	m *pointMeta
}

// NewPoint declares the interceptor point id (e.g. "pubsub.items.get") with
// a doc string saying when it fires and what handlers may return. Ids are
// process-wide: NewPoint panics on an invalid id (see ValidateID) or on an
// id already declared (as a point or an event).
func NewPoint[Req, Res any](id string, doc string) *Point[Req, Res] {
	return &Point[Req, Res]{m: declare(id, doc, KindIntercept)}
}

// ID returns the stable id of the point, used in logs, metrics, config and
// on the wire.
func (p *Point[Req, Res]) ID() string { return p.m.id }

// Doc returns the documentation given to NewPoint.
func (p *Point[Req, Res]) Doc() string { return p.m.doc }

// String returns the id of the point.
func (p *Point[Req, Res]) String() string { return p.m.id }

// Event is an observer point (the ancestor's triggers_no_cancel): every
// observer runs, none can cancel, errors are collected (see Notify).
type Event[Req any] struct {
	m *pointMeta
}

// NewEvent declares the observer point id (e.g. "session.state"). It panics
// like NewPoint on an invalid or duplicate id; events and points share the
// same id space.
func NewEvent[Req any](id string, doc string) *Event[Req] {
	return &Event[Req]{m: declare(id, doc, KindObserve)}
}

// ID returns the stable id of the event.
func (e *Event[Req]) ID() string { return e.m.id }

// Doc returns the documentation given to NewEvent.
func (e *Event[Req]) Doc() string { return e.m.doc }

// String returns the id of the event.
func (e *Event[Req]) String() string { return e.m.id }
