package session

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"sync"
	"time"

	"gosrc.io/xmpp/stanza"
)

// maxConcurrentIQ bounds the incoming IQ requests handled at once per
// connection.
const maxConcurrentIQ = 64

// conn is one negotiated stream on one transport. It is never reused:
// reconnection makes a new one.
type conn struct {
	s    *Session
	st   *stream
	jid  string   // bound full JID
	info ConnInfo // set before the connection is shared, then read-only

	ctx    context.Context // ends with the connection
	cancel context.CancelFunc

	wsem  chan struct{} // serialises writes, one stanza per Write
	iqSem chan struct{} // bounds incoming IQ handlers
	done  chan struct{} // closed when the receive loop has ended
	wg    sync.WaitGroup

	errOnce   sync.Once
	err       error
	closeOnce sync.Once
}

func newConn(s *Session, st *stream, bound string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		s: s, st: st, jid: bound,
		ctx: ctx, cancel: cancel,
		wsem:  make(chan struct{}, 1),
		iqSem: make(chan struct{}, maxConcurrentIQ),
		done:  make(chan struct{}),
	}
}

// fail ends the connection with cause (the first cause wins): the stream
// is closed, which ends the receive loop. The stream end is written
// unless a stanza is being written (its writer holds wsem; it may be the
// caller): closing the connection then unblocks that writer.
func (c *conn) fail(cause error) {
	c.errOnce.Do(func() { c.err = cause })
	c.cancel()
	c.closeOnce.Do(func() {
		select {
		case c.wsem <- struct{}{}:
			c.st.close()
			<-c.wsem
		default:
			c.st.abort()
		}
	})
}

// cause is why the connection ended (valid after done).
func (c *conn) cause() error {
	c.errOnce.Do(func() {}) // orders this read after the write of c.err
	return c.err
}

// finish waits until every goroutine of the connection has ended. The
// connection must have failed.
func (c *conn) finish() {
	<-c.done
	c.wg.Wait()
}

// write sends one serialised stanza (or any top-level element) in one
// Write, so that concurrent senders never interleave; it is the only
// writer of an established stream (where stream management counts
// outgoing stanzas). The write must complete within Config.Timeout plus a
// second per 16 KiB (a peer that stops reading is noticed; a large stanza
// on a slow link is not cut). A write error ends the connection.
func (c *conn) write(ctx context.Context, data []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrDisconnected
	}
	defer func() { <-c.wsem }()
	if c.ctx.Err() != nil {
		return ErrDisconnected
	}
	if err := c.st.writeWithin(data, c.s.cfg.Timeout+time.Duration(len(data)>>14)*time.Second); err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// readLoop reads stanzas in order until the stream ends; it is the only
// reader of an established stream (where stream management counts
// incoming stanzas).
func (c *conn) readLoop() {
	defer close(c.done)
	for {
		p, err := c.st.next()
		if err != nil {
			c.fail(fmt.Errorf("read: %w", err))
			return
		}
		switch p := p.(type) {
		case stanza.Message:
			if h := c.s.h.Message; h != nil {
				h(&p)
			}
		case stanza.Presence:
			if h := c.s.h.Presence; h != nil {
				h(&p)
			}
		case *stanza.IQ:
			c.handleIQ(p)
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
// responders or Handlers.IQ.
func (c *conn) handleIQ(iq *stanza.IQ) {
	switch iq.Type {
	case stanza.IQTypeResult, stanza.IQTypeError:
		if !c.s.tracker.deliver(iq, c.jid) {
			c.s.log.Debug("xmpp: dropped an iq answer matching no request", "id", iq.Id, "from", iq.From)
		}
		return
	case stanza.IQTypeGet, stanza.IQTypeSet:
	default:
		c.s.log.Debug("xmpp: dropped an iq of unknown type", "type", string(iq.Type), "from", iq.From)
		return
	}
	if iq.Type == stanza.IQTypeGet {
		if iq.Any != nil && iq.Any.XMLName.Space == NSPing && iq.Any.XMLName.Local == "ping" {
			c.reply(iq, "")
			return
		}
		if q, ok := iq.Payload.(*stanza.DiscoInfo); ok {
			c.answerDisco(iq, q.Node)
			return
		}
	}
	h := c.s.h.IQ
	if h == nil {
		c.replyError(iq, "cancel", "feature-not-implemented")
		return
	}
	select {
	case c.iqSem <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.iqSem }()
		c.answerWith(h, iq)
	}()
}

// answerWith runs the IQ handler and sends its answer.
func (c *conn) answerWith(h func(context.Context, *stanza.IQ) (*stanza.IQ, error), iq *stanza.IQ) {
	res, err := h(c.ctx, iq)
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

// send writes an answer; failures end the connection and are only logged.
func (c *conn) send(data []byte) {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.Timeout)
	defer cancel()
	if err := c.write(ctx, data); err != nil && c.ctx.Err() == nil {
		c.s.log.Debug("xmpp: send answer", "err", err)
	}
}

// pingLoop sends a XEP-0199 ping to the server every PingInterval and ends
// the connection when one stays unanswered for PingTimeout. Any answer,
// an error included, proves the stream alive.
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
		ctx, cancel := context.WithTimeout(c.ctx, cfg.PingTimeout)
		id := c.s.newID()
		_, err := c.s.sendIQ(ctx, c, id, domain, []byte(iqXML("get", id, domain, "<ping xmlns='"+NSPing+"'/>")), false)
		cancel()
		var iqErr *IQError
		switch {
		case err == nil || errors.As(err, &iqErr):
		case c.ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			c.s.log.Warn("xmpp: liveness ping unanswered", "timeout", cfg.PingTimeout)
			c.fail(fmt.Errorf("%w after %s", ErrPingTimeout, cfg.PingTimeout))
			return
		default:
			c.fail(fmt.Errorf("liveness ping: %w", err))
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
