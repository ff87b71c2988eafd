package session

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gosrc.io/xmpp/stanza"
)

// maxConcurrentIQ bounds the incoming IQ requests handled at once per
// binding.
const maxConcurrentIQ = 64

// conn is one negotiated stream on one transport, carrying a binding
// (b). It is never reused: reconnection makes a new one, which either
// resumes the binding or carries a new one.
type conn struct {
	s    *Session
	st   *stream
	b    *binding
	info ConnInfo // set before the connection is shared, then read-only
	// refused says why this connection did not resume the binding it was
	// asked to resume (it carries a fresh one); set before it is shared.
	refused error

	ctx    context.Context // ends with the connection
	cancel context.CancelFunc

	wsem chan struct{} // serialises writes, one element per Write
	done chan struct{} // closed when the receive loop has ended
	wg   sync.WaitGroup

	// ackArmed: a read deadline waits for the answer to an <r/> (see
	// armAck); set under b.mu, read by the receive loop.
	ackArmed atomic.Bool

	errOnce   sync.Once
	err       error
	graceful  bool // the connection was closed with a stream end
	closeOnce sync.Once
}

func newConn(s *Session, st *stream, b *binding) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		s: s, st: st, b: b,
		ctx: ctx, cancel: cancel,
		wsem: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// fail ends the connection with cause (the first cause wins) and a stream
// end: Stop, and the server's own stream end or error. The stream end is
// written once the stanza being written, if any, is out (a second at
// most; then the connection is closed without it, which unblocks that
// writer). The server ends the binding (no resumption). Never called by
// a writer holding wsem.
func (c *conn) fail(cause error) { c.end(cause, true) }

// drop ends the connection with cause without a stream end: a network
// failure (read or write error, unanswered ping or acknowledgement
// request). The server keeps a resumable binding for its window.
func (c *conn) drop(cause error) { c.end(cause, false) }

func (c *conn) end(cause error, graceful bool) {
	c.errOnce.Do(func() { c.err, c.graceful = cause, graceful })
	c.cancel()
	c.closeOnce.Do(func() {
		if !c.graceful {
			c.st.abort()
			return
		}
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case c.wsem <- struct{}{}:
			c.st.close()
			<-c.wsem
		case <-t.C:
			c.st.abort()
		}
	})
}

// cause is why the connection ended (valid after done).
func (c *conn) cause() error {
	c.errOnce.Do(func() {}) // orders this read after the write of c.err
	return c.err
}

// dropped reports whether the connection ended without a stream end (a
// network failure): its binding may be resumed. Valid after done.
func (c *conn) dropped() bool {
	c.errOnce.Do(func() {})
	return c.err != nil && !c.graceful
}

// finish waits until every goroutine of the connection has ended. The
// connection must have failed.
func (c *conn) finish() {
	<-c.done
	c.wg.Wait()
}

// writeTimeout bounds the write of n bytes: Config.Timeout plus a second
// per 16 KiB (a peer that stops reading is noticed; a large stanza on a
// slow link is not cut).
func (c *conn) writeTimeout(n int) time.Duration {
	return c.s.cfg.Timeout + time.Duration(n>>14)*time.Second
}

// writeStanza writes one stanza of c's binding in one Write, so that
// concurrent senders never interleave; it is the only writer of stanzas
// on an established stream, and where stream management counts them:
// under stream management the stanza is queued until acknowledged (a
// full queue makes the writer wait for room: an acknowledgement is always
// requested then), and an <r/> goes with it when none is unanswered.
// queued reports whether the stanza is in the queue (resent on
// resumption even when the write failed). errDetached: c no longer
// carries the binding. A write error ends the connection.
func (c *conn) writeStanza(ctx context.Context, data []byte) (queued bool, err error) {
	b := c.b
	for {
		select {
		case c.wsem <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-c.done:
			return false, errDetached
		}
		b.mu.Lock()
		if b.conn != c || c.ctx.Err() != nil {
			b.mu.Unlock()
			<-c.wsem
			return false, errDetached
		}
		sm := b.sm
		var room chan struct{}
		request := false
		if sm != nil {
			if sm.full(len(data)) {
				room = sm.roomCh()
			} else {
				sm.push(data)
				if !sm.requested {
					sm.requested, request = true, true
					c.armAck()
				}
			}
		}
		b.mu.Unlock()
		if room != nil {
			<-c.wsem
			select {
			case <-room:
				continue
			case <-ctx.Done():
				return false, ctx.Err()
			case <-c.done:
				return false, errDetached
			}
		}
		out := data
		if request {
			out = append(data[:len(data):len(data)], smRequestXML...)
		}
		err := c.st.writeWithin(out, c.writeTimeout(len(out)))
		<-c.wsem
		if err != nil {
			c.drop(err)
			return sm != nil, err
		}
		return sm != nil, nil
	}
}

// writeNonza writes a stream management element (not counted) within
// Config.Timeout; a failure ends the connection.
func (c *conn) writeNonza(data string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.Timeout)
	defer cancel()
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-c.wsem }()
	if c.ctx.Err() != nil {
		return
	}
	if err := c.st.writeWithin([]byte(data), c.s.cfg.Timeout); err != nil {
		c.drop(err)
	}
}

// armAck makes the receive loop expect traffic within Config.PingTimeout:
// an <r/> is (about to be) sent. The deadline moves on with every element
// received and is lifted by the answer; an expiry ends the connection as
// half-open. Called with b.mu held.
func (c *conn) armAck() {
	c.ackArmed.Store(true)
	_ = c.st.raw.SetReadDeadline(time.Now().Add(c.s.cfg.PingTimeout))
}

// disarmAck lifts the read deadline of armAck (b.mu held).
func (c *conn) disarmAck() {
	c.ackArmed.Store(false)
	_ = c.st.raw.SetReadDeadline(time.Time{})
}

// requestAck sends an <r/> unless one is unanswered (liveness under
// stream management: the answer is due within Config.PingTimeout).
func (c *conn) requestAck() {
	b := c.b
	b.mu.Lock()
	send := b.conn == c && b.sm != nil && !b.sm.requested
	if send {
		b.sm.requested = true
		c.armAck()
	}
	b.mu.Unlock()
	if send {
		c.writeNonza(smRequestXML)
	}
}

// handled counts a stanza received (stream management's h).
func (c *conn) handled() {
	b := c.b
	b.mu.Lock()
	if b.sm != nil {
		b.sm.in++
	}
	b.mu.Unlock()
}

// answerAck answers the server's <r/> with the stanzas received.
func (c *conn) answerAck() {
	b := c.b
	b.mu.Lock()
	if b.sm == nil {
		b.mu.Unlock()
		return
	}
	h := b.sm.in
	b.mu.Unlock()
	c.writeNonza(smAnswerXML(h))
}

// acked applies the server's <a h/>: acknowledged stanzas leave the
// queue; when some remain, the next acknowledgement is requested at once.
func (c *conn) acked(h uint32) {
	b := c.b
	b.mu.Lock()
	if b.sm == nil || b.conn != c {
		b.mu.Unlock()
		return
	}
	err := b.sm.ack(h)
	again := err == nil && len(b.sm.queue) > 0
	if again {
		b.sm.requested = true
		c.armAck()
	} else {
		b.sm.requested = false
		c.disarmAck()
	}
	b.mu.Unlock()
	if err != nil {
		c.fail(err)
		return
	}
	if again {
		c.writeNonza(smRequestXML)
	}
}

// readLoop reads stanzas in order until the stream ends; it is the only
// reader of an established stream (where stream management counts
// incoming stanzas and answers acknowledgement requests).
func (c *conn) readLoop() {
	defer close(c.done)
	for {
		p, err := c.st.next()
		if err != nil {
			var ne net.Error
			if c.ackArmed.Load() && errors.As(err, &ne) && ne.Timeout() {
				c.s.log.Warn("xmpp: stream management acknowledgement unanswered", "timeout", c.s.cfg.PingTimeout)
				c.drop(fmt.Errorf("%w: nothing received within %s of a stream management request", ErrPingTimeout, c.s.cfg.PingTimeout))
			} else {
				c.drop(fmt.Errorf("read: %w", err))
			}
			return
		}
		if c.ackArmed.Load() {
			_ = c.st.raw.SetReadDeadline(time.Now().Add(c.s.cfg.PingTimeout))
		}
		switch p := p.(type) {
		case stanza.Message:
			if h := c.s.h.Message; h != nil {
				h(&p)
			}
			c.handled()
		case stanza.Presence:
			if h := c.s.h.Presence; h != nil {
				h(&p)
			}
			c.handled()
		case *stanza.IQ:
			if c.handleIQ(p) {
				c.handled()
			}
		case *smRequest:
			c.answerAck()
		case *smAnswer:
			c.acked(p.h)
		case stanza.StreamClosePacket:
			c.fail(ErrStreamClosed)
			return
		case stanza.StreamError:
			c.fail(streamError(p))
			return
		default:
			c.s.log.Debug("xmpp: ignored top-level element", "name", p.Name())
		}
	}
}

// handleIQ routes an IQ: answers to the tracker, requests to the built-in
// responders or Handlers.IQ. It reports false when the request was not
// taken (the connection ended while every handler slot was busy): it is
// then not counted as handled, and the server resends it on resumption.
func (c *conn) handleIQ(iq *stanza.IQ) bool {
	switch iq.Type {
	case stanza.IQTypeResult, stanza.IQTypeError:
		if !c.s.tracker.deliver(iq, c.b.jid) {
			c.s.log.Debug("xmpp: dropped an iq answer matching no request", "id", iq.Id, "from", iq.From)
		}
		return true
	case stanza.IQTypeGet, stanza.IQTypeSet:
	default:
		c.s.log.Debug("xmpp: dropped an iq of unknown type", "type", string(iq.Type), "from", iq.From)
		return true
	}
	if iq.Type == stanza.IQTypeGet {
		if iq.Any != nil && iq.Any.XMLName.Space == NSPing && iq.Any.XMLName.Local == "ping" {
			c.reply(iq, "")
			return true
		}
		if q, ok := iq.Payload.(*stanza.DiscoInfo); ok {
			c.answerDisco(iq, q.Node)
			return true
		}
	}
	h := c.s.h.IQ
	if h == nil {
		c.replyError(iq, "cancel", "feature-not-implemented")
		return true
	}
	b := c.b
	select {
	case b.iqSem <- struct{}{}:
	case <-b.ctx.Done():
		return false
	case <-c.ctx.Done():
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.iqSem }()
		c.answerWith(h, iq)
	}()
	return true
}

// answerWith runs the IQ handler and sends its answer.
func (c *conn) answerWith(h func(context.Context, *stanza.IQ) (*stanza.IQ, error), iq *stanza.IQ) {
	res, err := h(c.b.ctx, iq)
	var iqErr *IQError
	switch {
	case errors.Is(err, ErrUnhandled):
		c.replyError(iq, "cancel", "feature-not-implemented")
	case errors.As(err, &iqErr):
		typ := iqErr.Type
		if typ == "" {
			typ = "cancel"
		}
		c.replyError(iq, typ, iqErr.Condition)
	case err != nil:
		c.s.log.Warn("xmpp: iq handler failed", "from", iq.From, "err", err)
		c.replyError(iq, "wait", "internal-server-error")
	case res == nil:
		c.replyError(iq, "cancel", "service-unavailable")
	default:
		res.XMLName = xml.Name{Local: "iq"}
		res.Id, res.To, res.From = iq.Id, iq.From, ""
		if res.Type == "" {
			res.Type = stanza.IQTypeResult
		}
		data, err := xml.Marshal(res)
		if err != nil {
			c.s.log.Warn("xmpp: encode iq answer", "err", err)
			c.replyError(iq, "wait", "internal-server-error")
			return
		}
		c.send(data)
	}
}

// answerDisco answers a disco#info request for the entity or its caps node.
func (c *conn) answerDisco(iq *stanza.IQ, node string) {
	d := c.s.discoFeatures()
	if node != "" && node != c.s.cfg.CapsNode+"#"+d.ver {
		c.replyError(iq, "cancel", "item-not-found")
		return
	}
	c.reply(iq, d.queryXML(node))
}

// reply sends a result with a raw payload.
func (c *conn) reply(iq *stanza.IQ, payload string) {
	c.send([]byte(iqXML("result", iq.Id, iq.From, payload)))
}

// replyError sends an error answer with a defined condition.
func (c *conn) replyError(iq *stanza.IQ, typ, condition string) {
	c.send([]byte(iqXML("error", iq.Id, iq.From,
		"<error type='"+escapeAttr(typ)+"'><"+condition+" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")))
}

// send writes an answer on the binding (queued for its resumption when
// the connection is lost); failures are only logged.
func (c *conn) send(data []byte) {
	ctx, cancel := context.WithTimeout(c.b.ctx, c.s.cfg.Timeout)
	defer cancel()
	if err := c.b.send(ctx, data); err != nil && c.b.ctx.Err() == nil {
		c.s.log.Debug("xmpp: send answer", "err", err)
	}
}

// pingLoop checks every PingInterval that the stream is alive: under
// stream management with an <r/> (see armAck: the connection ends when
// nothing arrives within PingTimeout), otherwise with a XEP-0199 ping to
// the server, which ends the connection when unanswered for PingTimeout.
// Any answer to a ping, an error included, proves the stream alive.
func (c *conn) pingLoop() {
	defer c.wg.Done()
	cfg := c.s.cfg
	domain := c.s.cfg.account.Domain
	for {
		t := time.NewTimer(cfg.PingInterval)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if c.b.sm != nil {
			c.requestAck()
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, cfg.PingTimeout)
		id := c.s.newID()
		_, err := c.s.sendIQ(ctx, c.b, id, domain, []byte(iqXML("get", id, domain, "<ping xmlns='"+NSPing+"'/>")), false, true)
		cancel()
		var iqErr *IQError
		switch {
		case err == nil || errors.As(err, &iqErr):
		case c.ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			c.s.log.Warn("xmpp: liveness ping unanswered", "timeout", cfg.PingTimeout)
			c.drop(fmt.Errorf("%w after %s", ErrPingTimeout, cfg.PingTimeout))
			return
		default:
			c.drop(fmt.Errorf("liveness ping: %w", err))
			return
		}
	}
}

// iqXML serialises an iq with a raw payload.
func iqXML(typ, id, to, payload string) string {
	s := "<iq type='" + escapeAttr(typ) + "' id='" + escapeAttr(id) + "'"
	if to != "" {
		s += " to='" + escapeAttr(to) + "'"
	}
	if payload == "" {
		return s + "/>"
	}
	return s + ">" + payload + "</iq>"
}
