package session

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"gosrc.io/xmpp/stanza"
)

// Stream management (XEP-0198): the elements, the counters and the
// queue of unacknowledged stanzas. The binding (binding.go) keeps them
// across connections; the connection (conn.go) counts and acknowledges.

const (
	nsClient = "jabber:client"
	nsSM     = "urn:xmpp:sm:3"
	// nsStanzas is the namespace of stanza error conditions.
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// Bounds and timings of stream management.
const (
	// maxUnackedStanzas and maxUnackedBytes bound the queue of stanzas
	// sent and not yet acknowledged by the server: a writer finding it
	// full waits for an acknowledgement (one is always requested), so a
	// server that stops acknowledging cannot make the session hoard
	// memory. A single stanza larger than maxUnackedBytes still goes when
	// the queue is empty.
	maxUnackedStanzas = 500
	maxUnackedBytes   = 16 << 20
	// defaultResumeWindow is how long a binding is assumed resumable
	// after a loss when the server's <enabled/> names no max.
	defaultResumeWindow = 5 * time.Minute
	// maxResumeWindow caps what a server may announce.
	maxResumeWindow = 24 * time.Hour
	// resumeRetryInterval spaces the reconnection attempts, ±20 %, during
	// the first resumeFastPhase after a loss of a resumable binding (the
	// server holds the session: the sooner the better); afterwards
	// Config.Backoff applies from its first attempt.
	resumeRetryInterval = 500 * time.Millisecond
	resumeFastPhase     = 30 * time.Second
)

// Serialised stream management elements the session sends.
const (
	smRequestXML = "<r xmlns='" + nsSM + "'/>"
	smEnableXML  = "<enable xmlns='" + nsSM + "' resume='true'/>"
)

func smAnswerXML(h uint32) string {
	return "<a xmlns='" + nsSM + "' h='" + strconv.FormatUint(uint64(h), 10) + "'/>"
}

func smResumeXML(id string, h uint32) string {
	return "<resume xmlns='" + nsSM + "' previd='" + escapeAttr(id) + "' h='" + strconv.FormatUint(uint64(h), 10) + "'/>"
}

// ErrResumptionFailed is the cause of a disconnection whose stream could
// not be resumed (XEP-0198): the server refused it (its window passed, it
// restarted), or the window passed while the session could not reach the
// server. A fresh login follows; the error wraps what happened.
var ErrResumptionFailed = errors.New("stream resumption failed")

// The stream management elements the server sends (they implement
// stanza.Packet for the receive loop's switch).
type (
	smEnabled struct {
		id       string
		resume   bool
		max      time.Duration // 0: not announced
		location string
	}
	smResumed struct {
		h      uint32
		previd string
	}
	smFailed struct {
		h         uint32
		hasH      bool
		condition string
	}
	smRequest struct{}
	smAnswer  struct{ h uint32 }
)

func (*smEnabled) Name() string { return "sm enabled" }
func (*smResumed) Name() string { return "sm resumed" }
func (*smFailed) Name() string  { return "sm failed" }
func (*smRequest) Name() string { return "sm request" }
func (*smAnswer) Name() string  { return "sm answer" }

// smRaw is what the decoder reads of any stream management element.
type smRaw struct {
	ID       string `xml:"id,attr"`
	Resume   string `xml:"resume,attr"`
	Max      string `xml:"max,attr"`
	Location string `xml:"location,attr"`
	H        string `xml:"h,attr"`
	PrevID   string `xml:"previd,attr"`
	Children []struct {
		XMLName xml.Name
	} `xml:",any"`
}

// decodeSM decodes a stream management element from the server. Values
// are checked: a counter that is not a 32-bit unsigned number is an error
// (the stream is then unusable: counters would be wrong).
func decodeSM(dec *xml.Decoder, start xml.StartElement) (stanza.Packet, error) {
	var raw smRaw
	if err := dec.DecodeElement(&raw, &start); err != nil {
		return nil, err
	}
	switch start.Name.Local {
	case "enabled":
		e := &smEnabled{id: raw.ID, resume: raw.Resume == "true" || raw.Resume == "1", location: strings.TrimSpace(raw.Location)}
		if raw.Max != "" {
			secs, err := strconv.ParseUint(strings.TrimSpace(raw.Max), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("stream management: <enabled max=%q>: %w", raw.Max, err)
			}
			e.max = min(time.Duration(secs)*time.Second, maxResumeWindow)
		}
		return e, nil
	case "resumed":
		h, err := parseH(raw.H)
		if err != nil {
			return nil, fmt.Errorf("stream management: <resumed>: %w", err)
		}
		return &smResumed{h: h, previd: raw.PrevID}, nil
	case "failed":
		f := &smFailed{condition: "undefined-condition"}
		for _, c := range raw.Children {
			if c.XMLName.Space == nsStanzas {
				f.condition = c.XMLName.Local
				break
			}
		}
		if raw.H != "" {
			h, err := parseH(raw.H)
			if err != nil {
				return nil, fmt.Errorf("stream management: <failed>: %w", err)
			}
			f.h, f.hasH = h, true
		}
		return f, nil
	case "r":
		return &smRequest{}, nil
	case "a":
		h, err := parseH(raw.H)
		if err != nil {
			return nil, fmt.Errorf("stream management: <a>: %w", err)
		}
		return &smAnswer{h: h}, nil
	}
	return &otherElement{name: start.Name}, nil
}

// parseH parses a handled-stanzas counter (xs:unsignedInt).
func parseH(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("h=%q is not a stanza count", s)
	}
	return uint32(v), nil
}

// smState is the stream management state of a binding: the counters of
// XEP-0198 and the stanzas sent but not acknowledged. It is guarded by
// its binding's mu (see binding).
type smState struct {
	// id is the resumption id, "" when the server allows no resumption
	// (acknowledgements only).
	id string
	// location is the server's preferred reconnection address ("" none).
	location string
	// window is how long the server keeps the binding after a loss.
	window time.Duration
	// in counts the stanzas received (the h the session reports), out
	// the stanzas sent, acked the server's last h. Counters wrap at 2^32.
	in, out, acked uint32
	// queue holds the stanzas acked+1 … out, oldest first; queueBytes is
	// their size.
	queue      [][]byte
	queueBytes int
	// requested: an <r/> is unanswered on the current connection (its
	// answer is due within Config.PingTimeout).
	requested bool
	// room is closed (and reset to nil) when an acknowledgement frees
	// room in the queue; writers waiting for room wait on it.
	room chan struct{}
}

// newSMState is the state after <enabled/>.
func newSMState(e *smEnabled) *smState {
	sm := &smState{location: e.location, window: e.max}
	if e.resume && e.id != "" {
		sm.id = e.id
	}
	if sm.window <= 0 {
		sm.window = defaultResumeWindow
	}
	return sm
}

// full reports whether a stanza of n bytes must wait for room.
func (sm *smState) full(n int) bool {
	if len(sm.queue) == 0 {
		return false
	}
	return len(sm.queue) >= maxUnackedStanzas || sm.queueBytes+n > maxUnackedBytes
}

// roomCh returns the channel closed when room is freed.
func (sm *smState) roomCh() chan struct{} {
	if sm.room == nil {
		sm.room = make(chan struct{})
	}
	return sm.room
}

// push counts a stanza sent and queues it until acknowledged.
func (sm *smState) push(data []byte) {
	sm.out++
	sm.queue = append(sm.queue, data)
	sm.queueBytes += len(data)
}

// ack applies the server's h: the stanzas it acknowledges leave the
// queue. An h beyond what was sent, or behind the last one, is an error
// (XEP-0198 §4: handled-count-too-high).
func (sm *smState) ack(h uint32) error {
	n := h - sm.acked // modulo 2^32
	if int64(n) > int64(len(sm.queue)) {
		return fmt.Errorf("stream management: the server acknowledged %d stanzas, %d were sent (handled-count-too-high)", h, sm.out)
	}
	for _, d := range sm.queue[:n] {
		sm.queueBytes -= len(d)
	}
	clear(sm.queue[:n])
	sm.queue = sm.queue[n:]
	sm.acked = h
	if n > 0 && sm.room != nil {
		close(sm.room)
		sm.room = nil
	}
	return nil
}

// pending returns the unacknowledged stanzas (to resend).
func (sm *smState) pending() [][]byte {
	return append([][]byte(nil), sm.queue...)
}

// jittered is d ±20 %.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
}

// OriginLocation is the address a server named for resumption (XEP-0198
// <enabled location/>).
const OriginLocation = "sm:location"

// locationEndpoint is the endpoint of an <enabled location/> ("host",
// "host:port", "[v6]:port"), of the same kind (TLS) as prev; false when it
// cannot be parsed.
func locationEndpoint(loc string, prev Endpoint) (Endpoint, bool) {
	if loc == "" {
		return Endpoint{}, false
	}
	host, port := loc, prev.Port
	if h, p, err := net.SplitHostPort(loc); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Endpoint{}, false
		}
		host, port = h, n
	}
	host, err := hostASCII(host)
	if err != nil || host == "" || port == 0 {
		return Endpoint{}, false
	}
	return Endpoint{Host: host, Port: port, DirectTLS: prev.DirectTLS, Origin: OriginLocation}, true
}
