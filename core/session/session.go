package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gosrc.io/xmpp/stanza"
)

// State is the connection state of a session.
type State string

// The states of a session. A session starts Disconnected; Start moves it
// to Connecting, then Connected (or Failed on a permanent error, back to
// Disconnected on another error); a lost stream moves it to Reconnecting
// until a new stream is up (Connected, or Resumed when it resumed the
// binding of the lost one) or a permanent error stops the supervisor
// (Failed); Stop moves it to Disconnected.
const (
	StateDisconnected State = "disconnected"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateFailed       State = "failed"
	// StateResumed is reported (Handlers.StateChanged) when a new stream
	// resumed the binding of the lost one (XEP-0198): same full JID, no
	// stanza lost, the stanzas the server held delivered. State returns
	// StateConnected from the moment the resumed stream carries stanzas
	// again (just before the held ones are all delivered).
	StateResumed State = "resumed"
)

// ErrUnhandled is returned by a Handlers.IQ that does not handle the
// request's payload: the session answers feature-not-implemented.
var ErrUnhandled = errors.New("iq not handled")

// Handlers are the callbacks of a session; every field is optional. They
// run on the session's goroutines: none may call Stop (it waits for them),
// and Message and Presence must return quickly (see the package
// documentation on ordering).
type Handlers struct {
	// Connecting runs before each connection attempt that logs in afresh,
	// before the stream opens (the sequential plugin hook); an attempt to
	// resume a binding runs it only when the server refuses the
	// resumption, before binding anew. An error aborts the attempt and is
	// permanent: Start returns it, the supervisor stops in StateFailed.
	Connecting func(ctx context.Context) error
	// Connected runs after bind and the initial presence of every fresh
	// binding, the first one included, on the supervisor goroutine (Start
	// does not wait for it); not for a stream that resumed the binding
	// (see Resumed). ctx ends with the binding: resync caches here. The
	// session already answers and sends stanzas while it runs; the next
	// disconnection is handled after it returns.
	Connected func(ctx context.Context, boundJID string)
	// Resumed runs, on the supervisor goroutine, when a new stream resumed
	// the binding of a lost one (XEP-0198): the same full JID, the
	// stanzas the server held delivered before it runs, nothing to
	// resync. Neither Disconnected nor Connected runs for such a loss.
	Resumed func(boundJID string)
	// Disconnected runs each time a binding ends, with its cause (nil
	// after Stop): at once when a stream ends without possible
	// resumption, later when a resumption fails (the error wraps
	// ErrResumptionFailed: the server refused it, or its window passed).
	Disconnected func(err error)
	// StateChanged runs on every state change, with the error that caused
	// it, if any.
	StateChanged func(state State, err error)
	// Attempted runs after each connection attempt (the first one of Start
	// and each reconnection), with its error (nil: connected).
	Attempted func(reconnect bool, err error)
	// Message receives messages in arrival order, on the receive goroutine.
	Message func(msg *stanza.Message)
	// Presence receives presences in arrival order, on the receive
	// goroutine (interleaved with Message in arrival order).
	Presence func(p *stanza.Presence)
	// IQ answers get/set requests from other entities (disco#info and
	// ping are answered by the session itself). It runs on its own
	// goroutine; ctx ends with the connection. A non-nil reply is sent
	// with the request's id, type "result" unless set, and 'to' the
	// requester; (nil, nil) answers service-unavailable; ErrUnhandled
	// answers feature-not-implemented; an *IQError answers its condition
	// and type; another error answers internal-server-error (the error is
	// logged, not sent).
	IQ func(ctx context.Context, iq *stanza.IQ) (*stanza.IQ, error)
}

// Session is the XMPP session of one account. Create it with New, connect
// with Start, end with Stop. Its methods are safe for concurrent use.
type Session struct {
	cfg    *settings
	cfgErr error
	h      Handlers
	log    *slog.Logger

	// resolver looks up SRV records, dial opens TCP connections (host
	// names resolved by the same resolver); handshake, when set, replaces
	// the TLS client handshake. Tests replace them.
	resolver  srvResolver
	dial      dialer
	handshake func(ctx context.Context, raw net.Conn, cfg *tls.Config) (net.Conn, *tls.ConnectionState, error)

	tracker *tracker
	// resumptions counts the stream resumptions (the epoch of the IQs
	// registered since): requests from before one may be asked again.
	resumptions atomic.Uint64
	iqsSent     atomic.Int64
	idPfx       string
	idSeq       atomic.Uint64

	presMu sync.Mutex // orders presence broadcasts with feature changes

	mu      sync.Mutex
	state   State
	cur     *conn // the live connection (nil while reconnecting)
	jid     string
	disco   *discoFeatures
	started bool
	runCtx  context.Context
	stop    context.CancelFunc
	done    chan struct{} // closed when Start failed or the supervisor ended
}

// New creates a session for cfg. It does not connect. A configuration
// error (bad JID, empty password, unreadable CA file) is returned by
// Start.
func New(cfg Config, h Handlers) *Session {
	s := &Session{
		h:       h,
		tracker: newTracker(),
		state:   StateDisconnected,
		disco:   newDiscoFeatures([]Identity{DefaultIdentity}, nil),
	}
	s.cfg, s.cfgErr = resolve(cfg)
	if s.cfg != nil {
		s.log = s.cfg.Log.With("jid", s.cfg.account.String())
		r := newResolver(s.cfg.dnsServer)
		s.resolver, s.dial = r, netDialer(r)
	} else {
		s.log = slog.Default()
		if cfg.Log != nil {
			s.log = cfg.Log
		}
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.idPfx = hex.EncodeToString(b[:]) + "-"
	return s
}

// Start connects once, synchronously: it returns the error of this first
// attempt (an *AuthError for a SASL failure, a network error, a Connecting
// hook error, a configuration error) and then does not retry. On success
// it returns once the stream is up and the initial presence sent, and a
// supervisor goroutine takes over: it runs Handlers.Connected, watches the
// stream and reconnects with backoff until Stop or a permanent error. ctx
// bounds only the first attempt. Start fails while the session runs.
func (s *Session) Start(ctx context.Context) error {
	if s.cfgErr != nil {
		s.log.Warn("xmpp: connection not attempted: invalid session configuration", "err", s.cfgErr)
		s.setState(StateFailed, s.cfgErr)
		return &permanentError{s.cfgErr}
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("session already started")
	}
	s.started = true
	s.runCtx, s.stop = context.WithCancel(context.Background())
	s.done = make(chan struct{})
	runCtx, done := s.runCtx, s.done
	s.mu.Unlock()

	s.setState(StateConnecting, nil)
	cctx, cancel := context.WithCancel(ctx)
	stopAfter := context.AfterFunc(runCtx, cancel)
	c, err := s.connect(cctx, nil)
	stopAfter()
	cancel()
	if runCtx.Err() == nil {
		s.attempted(false, err)
	}
	if err == nil && runCtx.Err() != nil {
		// Stop came while the stream was being set up.
		c.fail(ErrStopped)
		c.finish()
		s.detach(c)
		c.b.finish()
		err = ErrStopped
	}
	if err != nil {
		if runCtx.Err() != nil && !errors.Is(err, ErrStopped) {
			err = fmt.Errorf("%w: %w", ErrStopped, err)
		}
		st := StateDisconnected
		if IsPermanent(err) {
			st = StateFailed
		}
		if !errors.Is(err, ErrStopped) {
			s.log.Warn("xmpp: connection failed", "addr", s.cfg.target(), "err", err)
		}
		s.setState(st, err)
		s.end(done)
		return err
	}
	s.setState(StateConnected, nil)
	go s.supervise(c, runCtx, done)
	return nil
}

// Stop closes the stream cleanly (</stream:stream>), stops reconnecting
// and waits until every goroutine of the session has ended, or ctx ends.
// On a session that is not running it only moves StateFailed to
// StateDisconnected. Do not call it from a handler.
func (s *Session) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		failed := s.state == StateFailed
		s.mu.Unlock()
		if failed {
			s.setState(StateDisconnected, nil)
		}
		return nil
	}
	stop, done := s.stop, s.done
	s.mu.Unlock()
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop xmpp session: %w", ctx.Err())
	}
}

// end marks the session as not running.
func (s *Session) end(done chan struct{}) {
	s.mu.Lock()
	s.started = false
	s.mu.Unlock()
	close(done)
}

// State returns the current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// JID returns the full JID bound by the current (or last) stream, "" if
// none was bound yet.
func (s *Session) JID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jid
}

// IQsSent counts the IQs sent through SendIQ and SendIQRaw (liveness pings
// and answers to requests are not counted).
func (s *Session) IQsSent() int64 { return s.iqsSent.Load() }

// setState records and reports a state (StateResumed is recorded as
// StateConnected). It is only called by Start's goroutine before the
// supervisor exists, then by the supervisor: calls are sequential.
func (s *Session) setState(st State, err error) {
	s.mu.Lock()
	s.state = st
	if st == StateResumed {
		s.state = StateConnected
	}
	s.mu.Unlock()
	if s.h.StateChanged != nil {
		s.h.StateChanged(st, err)
	}
}

// attempted reports a connection attempt to Handlers.Attempted.
func (s *Session) attempted(reconnect bool, err error) {
	if s.h.Attempted != nil {
		s.h.Attempted(reconnect, err)
	}
}

// current returns the live connection, or nil.
func (s *Session) current() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// detach forgets c as the current connection and as its binding's.
func (s *Session) detach(c *conn) {
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
	}
	s.mu.Unlock()
	c.b.detach(c)
}

// connect negotiates a stream on a fresh transport, resuming prev when it
// can be resumed (else, and when the server refuses, after the Connecting
// hook, with a fresh binding), starts its goroutines and makes it current;
// a fresh binding sends the initial presence, a resumed one resends the
// stanzas the server did not acknowledge and waits until the server has
// delivered what it held.
func (s *Session) connect(ctx context.Context, prev *binding) (*conn, error) {
	var r *resumeRequest
	if prev != nil {
		r = prev.resumeRequest()
	}
	hook := func(ctx context.Context) error {
		if s.h.Connecting == nil {
			return nil
		}
		if err := s.h.Connecting(ctx); err != nil {
			return &hookError{err}
		}
		return nil
	}
	if r == nil {
		if err := hook(ctx); err != nil {
			return nil, err
		}
	} else {
		r.beforeFresh = hook
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	n, err := s.establish(ctx, r)
	if err != nil {
		return nil, err
	}
	if n.resumed != nil {
		return s.resumeOn(ctx, prev, n, t0)
	}
	var sm *smState
	if n.sm != nil {
		sm = newSMState(n.sm)
	}
	b := newBinding(s, n.bound, sm)
	c := newConn(s, n.st, b)
	c.info = n.info
	c.info.JID, c.info.Since = n.bound, time.Now()
	c.info.StreamManagement, c.info.Resumable = sm != nil, sm != nil && sm.id != ""
	c.refused = n.refused
	b.attach(c)
	go c.readLoop()
	if s.cfg.PingInterval > 0 {
		c.wg.Add(1)
		go c.pingLoop()
	}
	s.mu.Lock()
	s.cur = c
	s.jid = n.bound
	s.mu.Unlock()
	if err := s.sendPresence(ctx, b); err != nil {
		c.drop(err)
		c.finish()
		s.detach(c)
		b.finish()
		return nil, fmt.Errorf("send initial presence: %w", err)
	}
	s.log.Info("xmpp: connected", "bound", n.bound, "endpoint", c.info.Endpoint.String(), "address", c.info.Address,
		"tls", c.info.TLSVersion, "mechanism", c.info.Mechanism, "channel_binding", c.info.ChannelBinding,
		"stream_management", c.info.StreamManagement, "resumable", c.info.Resumable, "resume_window", b.window(),
		"took", time.Since(t0).Round(time.Millisecond))
	return c, nil
}

// resumeOn makes the negotiated stream n carry b, which the server
// resumed (XEP-0198 §5): the stanzas it did not acknowledge are resent,
// first, in order; then a ping waits until everything the server held
// has been received (the server sends it before answering), so that
// when the session is reported resumed its handlers have seen it. A
// failure here ends the connection; b stays resumable unless the server
// broke the protocol.
func (s *Session) resumeOn(ctx context.Context, b *binding, n *negotiated, t0 time.Time) (*conn, error) {
	c := newConn(s, n.st, b)
	c.info = n.info
	c.info.JID, c.info.Since = b.jid, time.Now()
	c.info.StreamManagement, c.info.Resumable, c.info.Resumed = true, true, true
	c.wsem <- struct{}{} // nothing is written before the resent stanzas
	b.mu.Lock()
	err := b.sm.ack(n.resumed.h)
	var pending [][]byte
	if err == nil {
		pending = b.sm.pending()
		b.sm.requested = len(pending) > 0
		b.conn, b.endpoint = c, c.info.Endpoint
		if b.sm.requested {
			c.armAck()
		}
	} else {
		b.sm.id = "" // counters disagree: resuming again would lose or repeat stanzas
	}
	b.mu.Unlock()
	if err != nil {
		<-c.wsem
		c.st.close()
		return nil, err
	}
	go c.readLoop()
	if s.cfg.PingInterval > 0 {
		c.wg.Add(1)
		go c.pingLoop()
	}
	var werr error
	if len(pending) > 0 {
		var buf []byte
		for _, p := range pending {
			buf = append(buf, p...)
		}
		buf = append(buf, smRequestXML...)
		werr = c.st.writeWithin(buf, c.writeTimeout(len(buf)))
	}
	<-c.wsem
	fail := func(err error) (*conn, error) {
		c.drop(err)
		c.finish()
		s.detach(c)
		return nil, &lostAfterResumption{err}
	}
	if werr != nil {
		return fail(fmt.Errorf("resend %d stanzas after resumption: %w", len(pending), werr))
	}
	// The stream carries stanzas again: sends are accepted (a caller
	// whose answer comes with what the server held goes on at once),
	// while StateResumed waits for the catch-up below.
	s.mu.Lock()
	s.cur = c
	s.state = StateConnected
	s.mu.Unlock()
	epoch := s.resumptions.Add(1)
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	stop := context.AfterFunc(c.ctx, cancel)
	id := s.newID()
	domain := s.cfg.account.Domain
	_, perr := s.sendIQ(pctx, b, id, domain, []byte(iqXML("get", id, domain, "<ping xmlns='"+NSPing+"'/>")), false, true)
	stop()
	cancel()
	var iqErr *IQError
	if perr != nil && !errors.As(perr, &iqErr) {
		s.mu.Lock()
		s.state = StateReconnecting
		s.mu.Unlock()
		return fail(fmt.Errorf("after resumption: %w", perr))
	}
	// The server sent what it held before the ping's answer: a get sent
	// before the loss, acknowledged by the server and still unanswered, has
	// lost its answer (ejabberd may route it to the connection being
	// replaced) or is still being answered; it is asked again (a get
	// changes nothing; the second answer is dropped). A set cannot be.
	asked := 0
	for _, data := range s.tracker.staleGets(epoch) {
		if slices.ContainsFunc(pending, func(p []byte) bool { return bytes.Equal(p, data) }) {
			continue // resent above
		}
		if err := b.send(ctx, data); err != nil {
			s.log.Warn("xmpp: asking again a request sent before the loss", "err", err)
			break
		}
		asked++
	}
	if err := s.sendPresenceIfChanged(ctx, b); err != nil {
		s.log.Warn("xmpp: send presence with new capabilities", "err", err)
	}
	s.log.Info("xmpp: stream resumed", "bound", b.jid, "endpoint", c.info.Endpoint.String(), "address", c.info.Address,
		"resent", len(pending), "asked_again", asked, "took", time.Since(t0).Round(time.Millisecond))
	return c, nil
}

// lostAfterResumption is the error of a connection lost after the server
// resumed the binding on it (the binding stays resumable, from then on).
type lostAfterResumption struct{ err error }

func (e *lostAfterResumption) Error() string { return e.err.Error() }
func (e *lostAfterResumption) Unwrap() error { return e.err }

// ConnInfo describes the live stream; false when there is none.
func (s *Session) ConnInfo() (ConnInfo, bool) {
	c := s.current()
	if c == nil {
		return ConnInfo{}, false
	}
	return c.info, true
}

// supervise runs Connected for each fresh binding, waits for the end of
// each connection and reconnects (resuming the binding when it can),
// until Stop or a permanent error.
func (s *Session) supervise(c *conn, runCtx context.Context, done chan struct{}) {
	defer s.end(done)
	fresh := true
	for {
		b := c.b
		if fresh && s.h.Connected != nil {
			s.h.Connected(b.ctx, b.jid)
		}
		select {
		case <-c.done:
		case <-runCtx.Done():
			c.fail(ErrStopped)
		}
		c.finish()
		s.detach(c)
		if runCtx.Err() != nil {
			s.endBinding(b, nil)
			s.setState(StateDisconnected, nil)
			s.log.Info("xmpp: disconnected")
			return
		}
		cause := c.cause()
		resumable := c.dropped() && b.resumable()
		if resumable {
			s.log.Warn("xmpp: stream lost, resuming", "err", cause, "window", b.window())
		} else {
			s.log.Warn("xmpp: stream lost, reconnecting", "err", cause)
			s.endBinding(b, cause)
		}
		s.setState(StateReconnecting, cause)
		if c = s.reconnect(runCtx, b, resumable, cause); c == nil {
			return
		}
		fresh = c.b != b
		if fresh {
			s.setState(StateConnected, nil)
			continue
		}
		s.setState(StateResumed, nil)
		if s.h.Resumed != nil {
			s.h.Resumed(b.jid)
		}
	}
}

// endBinding ends b for good and reports it (Handlers.Disconnected, once;
// cause nil after Stop).
func (s *Session) endBinding(b *binding, cause error) {
	if b.isEnded() {
		return
	}
	if errors.Is(cause, ErrStopped) {
		cause = nil
	}
	// After Stop, the stream end followed what was sent: nothing is lost.
	if dropped := b.finish(); dropped > 0 && cause != nil {
		s.log.Warn("xmpp: stanzas sent before the loss may not have reached the server", "stanzas", dropped, "err", cause)
	}
	if s.h.Disconnected != nil {
		s.h.Disconnected(cause)
	}
}

// reconnect connects again after the loss of prev's connection (cause),
// and returns the new connection: one that resumed prev, or one with a
// fresh binding (prev is then ended and reported first). While prev is
// resumable the first attempt is immediate and the next ones come every
// resumeRetryInterval (±20 %) for resumeFastPhase, then after
// Config.Backoff(n); prev stops being resumable when the server's window
// has passed since the loss. Without resumption attempt n waits
// Config.Backoff(n). It returns nil, after setting the final state, when
// stopped or on a permanent error.
func (s *Session) reconnect(runCtx context.Context, prev *binding, resumable bool, cause error) *conn {
	lost := time.Now()
	var expired <-chan time.Time
	window := prev.window()
	var windowTimer *time.Timer
	if resumable {
		windowTimer = time.NewTimer(window)
		defer windowTimer.Stop()
		expired = windowTimer.C
	}
	attempt := 0
	delay := time.Duration(0)
	if !resumable {
		attempt = 1
		delay = s.cfg.Backoff(attempt)
	}
	giveUp := func(err error) {
		s.endBinding(prev, err)
	}
	for {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-expired:
			t.Stop()
			expired, resumable = nil, false
			s.log.Warn("xmpp: the stream's resumption window passed", "window", window)
			giveUp(fmt.Errorf("%w: the server's window of %s passed (stream lost: %w)", ErrResumptionFailed, window, cause))
			attempt = 1
			delay = s.cfg.Backoff(attempt)
			continue
		case <-runCtx.Done():
			t.Stop()
			giveUp(nil)
			s.setState(StateDisconnected, nil)
			return nil
		}
		var from *binding
		if resumable {
			from = prev
		}
		c, err := s.connect(runCtx, from)
		if err == nil || runCtx.Err() == nil {
			s.attempted(true, err)
		}
		if err == nil {
			if c.b != prev && !prev.isEnded() {
				why := c.refused
				if why == nil {
					why = errors.New("no resumption was possible")
				}
				s.log.Warn("xmpp: stream not resumed: logged in afresh", "err", why)
				giveUp(fmt.Errorf("%w: %w (stream lost: %w)", ErrResumptionFailed, why, cause))
			}
			return c
		}
		if runCtx.Err() != nil {
			giveUp(nil)
			s.setState(StateDisconnected, nil)
			return nil
		}
		if IsPermanent(err) {
			s.log.Error("xmpp: reconnection failed permanently", "addr", s.cfg.target(), "err", err)
			giveUp(err)
			s.setState(StateFailed, err)
			return nil
		}
		if resumable && !prev.resumable() {
			resumable = false // the server broke the counters
			giveUp(fmt.Errorf("%w: %w", ErrResumptionFailed, err))
		}
		var again *lostAfterResumption
		if resumable && errors.As(err, &again) {
			// The server resumed the binding, then the new stream was
			// lost too: its window starts again.
			lost = time.Now()
			windowTimer.Reset(window)
		}
		if resumable && time.Since(lost) < resumeFastPhase {
			delay = jittered(resumeRetryInterval)
			s.log.Debug("xmpp: resumption attempt failed", "addr", s.cfg.target(), "err", err)
			continue
		}
		attempt++
		delay = s.cfg.Backoff(attempt)
		s.log.Warn("xmpp: reconnection failed", "attempt", attempt, "addr", s.cfg.target(), "err", err, "next_in", delay.Round(time.Millisecond))
	}
}

// newID returns a fresh stanza id.
func (s *Session) newID() string {
	return s.idPfx + strconv.FormatUint(s.idSeq.Add(1), 36)
}
