package session

import (
	"fmt"
	"strings"
	"sync"

	"example.org/backend/core/jid"
	"gosrc.io/xmpp/stanza"
)

// tracker matches IQ results and errors to the requests waiting for them.
// A request is registered before it is written, so a fast answer cannot
// be missed; its channel is buffered, so delivery never blocks the receive
// loop, and a late answer for an abandoned request is dropped.
type tracker struct {
	mu      sync.Mutex
	pending map[string]*pendingIQ
}

// pendingIQ is a request waiting for its answer.
type pendingIQ struct {
	to    string // normalised request 'to' ("" when none)
	reply chan *stanza.IQ
	// data is the request as written, get whether it is of type get (it
	// may be asked again), epoch the session's resumption count when it
	// was registered.
	data  []byte
	get   bool
	epoch uint64
}

func newTracker() *tracker {
	return &tracker{pending: map[string]*pendingIQ{}}
}

// register records a request with id sent to 'to' (data: as written; get:
// of type get; epoch: the session's resumption count).
func (t *tracker) register(id, to string, data []byte, get bool, epoch uint64) (*pendingIQ, error) {
	if !get {
		data = nil // a set is never sent again: not kept
	}
	p := &pendingIQ{to: normalizeJID(to), reply: make(chan *stanza.IQ, 1), data: data, get: get, epoch: epoch}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.pending[id]; dup {
		return nil, fmt.Errorf("iq id %q is already waiting for an answer", id)
	}
	t.pending[id] = p
	return p, nil
}

// staleGets returns the requests of type get still waiting that were
// registered before epoch (sent before a resumption).
func (t *tracker) staleGets(epoch uint64) [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out [][]byte
	for _, p := range t.pending {
		if p.get && p.epoch < epoch {
			out = append(out, p.data)
		}
	}
	return out
}

// forget removes a request (answered or abandoned).
func (t *tracker) forget(id string, p *pendingIQ) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[id] == p {
		delete(t.pending, id)
	}
}

// deliver hands a result or error to its request. It reports false when
// no request matches the id, or when 'from' is not the entity the request
// went to (a spoofed answer is dropped, and the request keeps waiting for
// the genuine one). own is the session's bound full JID.
func (t *tracker) deliver(iq *stanza.IQ, own string) bool {
	t.mu.Lock()
	p, ok := t.pending[iq.Id]
	if ok && !replyFromMatches(p.to, iq.From, own) {
		ok = false
	}
	if ok {
		delete(t.pending, iq.Id)
	}
	t.mu.Unlock()
	if ok {
		p.reply <- iq // buffered, one answer per request
	}
	return ok
}

// replyFromMatches reports whether an answer from 'from' may answer a
// request sent to 'to' (normalised) by the session bound as own (full JID).
// RFC 6120 §10.3.3: a request without 'to' (or to the own bare JID) is
// answered by the server on behalf of the account, with no 'from', the
// bare JID, or (some servers) the full JID or the domain.
func replyFromMatches(to, from, own string) bool {
	from = normalizeJID(from)
	if to == from {
		return true
	}
	ownFull := normalizeJID(own)
	ownBare, _, _ := strings.Cut(ownFull, "/")
	_, domain, _ := strings.Cut(ownBare, "@")
	if to == "" || to == ownBare {
		return from == "" || from == ownBare || from == ownFull || from == domain
	}
	return false
}

// normalizeJID lowercases the localpart and domain of a JID (the resource
// is case-sensitive) so that comparisons follow the server's mapping for
// ASCII; an unparsable JID is kept as is (it will only equal itself).
func normalizeJID(s string) string {
	if s == "" {
		return ""
	}
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	j.Local = strings.ToLower(j.Local)
	return j.String()
}
