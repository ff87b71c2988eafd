package session

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
// until a new stream is up (Connected) or a permanent error stops the
// supervisor (Failed); Stop moves it to Disconnected.
const (
	StateDisconnected State = "disconnected"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateFailed       State = "failed"
)

// ErrUnhandled is returned by a Handlers.IQ that does not handle the
// request's payload: the session answers feature-not-implemented.
var ErrUnhandled = errors.New("iq not handled")

// Handlers are the callbacks of a session; every field is optional. They
// run on the session's goroutines: none may call Stop (it waits for them),
// and Message and Presence must return quickly (see the package
// documentation on ordering).
type Handlers struct {
	// Connecting runs before each connection attempt, before the stream
	// opens (the sequential plugin hook). An error aborts the attempt and
	// is permanent: Start returns it, the supervisor stops in StateFailed.
	Connecting func(ctx context.Context) error
	// Connected runs after bind and the initial presence of every
	// connection, the first one included, on the supervisor goroutine
	// (Start does not wait for it). ctx ends with the connection: resync
	// caches here. The session already answers and sends stanzas while it
	// runs; the next disconnection is handled after it returns.
	Connected func(ctx context.Context, boundJID string)
	// Disconnected runs each time a stream ends, with its cause (nil after
	// Stop).
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
	iqsSent atomic.Int64
	idPfx   string
	idSeq   atomic.Uint64

	presMu sync.Mutex // orders presence broadcasts with feature changes

	mu      sync.Mutex
	state   State
	cur     *conn
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
	c, err := s.connect(cctx)
	stopAfter()
	cancel()
	if runCtx.Err() == nil {
		s.attempted(false, err)
	}
	if err == nil && runCtx.Err() != nil {
		// Stop came while the stream was being set up.
		c.fail(ErrStopped)
		c.finish()
		s.clearConn(c)
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

// setState records and reports a state. It is only called by Start's
// goroutine before the supervisor exists, then by the supervisor: calls
// are sequential.
func (s *Session) setState(st State, err error) {
	s.mu.Lock()
	s.state = st
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

// clearConn forgets c if it is the current connection.
func (s *Session) clearConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == c {
		s.cur = nil
	}
}

// connect runs the Connecting hook, negotiates a stream on a fresh
// transport, starts its goroutines, makes it current and sends the initial
// presence.
func (s *Session) connect(ctx context.Context) (*conn, error) {
	if s.h.Connecting != nil {
		if err := s.h.Connecting(ctx); err != nil {
			return nil, &permanentError{fmt.Errorf("connecting hook: %w", err)}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	n, err := s.establish(ctx)
	if err != nil {
		return nil, err
	}
	bound := n.bound
	c := newConn(s, n.st, bound)
	c.info = n.info
	c.info.JID, c.info.Since = bound, time.Now()
	go c.readLoop()
	if s.cfg.PingInterval > 0 {
		c.wg.Add(1)
		go c.pingLoop()
	}
	s.mu.Lock()
	s.cur = c
	s.jid = bound
	s.mu.Unlock()
	if err := s.sendPresence(ctx, c); err != nil {
		c.fail(err)
		c.finish()
		s.clearConn(c)
		return nil, fmt.Errorf("send initial presence: %w", err)
	}
	s.log.Info("xmpp: connected", "bound", bound, "endpoint", c.info.Endpoint.String(), "address", c.info.Address,
		"tls", c.info.TLSVersion, "mechanism", c.info.Mechanism, "channel_binding", c.info.ChannelBinding,
		"took", time.Since(t0).Round(time.Millisecond))
	return c, nil
}

// ConnInfo describes the live stream; false when there is none.
func (s *Session) ConnInfo() (ConnInfo, bool) {
	c := s.current()
	if c == nil {
		return ConnInfo{}, false
	}
	return c.info, true
}

// supervise runs Connected for each connection, waits for its end and
// reconnects, until Stop or a permanent error.
func (s *Session) supervise(c *conn, runCtx context.Context, done chan struct{}) {
	defer s.end(done)
	for {
		if s.h.Connected != nil {
			s.h.Connected(c.ctx, c.jid)
		}
		select {
		case <-c.done:
		case <-runCtx.Done():
			c.fail(ErrStopped)
		}
		c.finish()
		s.clearConn(c)
		if runCtx.Err() != nil {
			if s.h.Disconnected != nil {
				s.h.Disconnected(nil)
			}
			s.setState(StateDisconnected, nil)
			s.log.Info("xmpp: disconnected")
			return
		}
		cause := c.cause()
		s.log.Warn("xmpp: stream lost, reconnecting", "err", cause)
		if s.h.Disconnected != nil {
			s.h.Disconnected(cause)
		}
		s.setState(StateReconnecting, cause)
		if c = s.reconnect(runCtx); c == nil {
			return
		}
		s.setState(StateConnected, nil)
	}
}

// reconnect connects again with backoff. It returns nil, after setting the
// final state, when stopped or on a permanent error.
func (s *Session) reconnect(runCtx context.Context) *conn {
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(s.cfg.Backoff(attempt))
		select {
		case <-t.C:
		case <-runCtx.Done():
			t.Stop()
			s.setState(StateDisconnected, nil)
			return nil
		}
		c, err := s.connect(runCtx)
		if err == nil || runCtx.Err() == nil {
			s.attempted(true, err)
		}
		if err == nil {
			return c
		}
		if runCtx.Err() != nil {
			s.setState(StateDisconnected, nil)
			return nil
		}
		if IsPermanent(err) {
			s.log.Error("xmpp: reconnection failed permanently", "attempt", attempt, "addr", s.cfg.target(), "err", err)
			s.setState(StateFailed, err)
			return nil
		}
		s.log.Warn("xmpp: reconnection failed", "attempt", attempt, "addr", s.cfg.target(), "err", err)
	}
}

// SetFeatures sets the disco#info identity and the features the session
// advertises (disco#info, caps and ping are always included). When they
// change while connected, a presence with the new XEP-0115 hash is sent.
func (s *Session) SetFeatures(identity Identity, features []string) {
	d := newDiscoFeatures([]Identity{identity}, features)
	s.presMu.Lock()
	defer s.presMu.Unlock()
	s.mu.Lock()
	changed := s.disco.ver != d.ver
	s.disco = d
	c := s.cur
	s.mu.Unlock()
	if !changed || c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := c.write(ctx, []byte(d.presenceXML(s.cfg.CapsNode))); err != nil {
		s.log.Warn("xmpp: send presence with new capabilities", "err", err)
	}
}

// Caps returns the advertised XEP-0115 node and verification string.
func (s *Session) Caps() (node, ver string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return DefaultCapsNode, s.disco.ver
	}
	return s.cfg.CapsNode, s.disco.ver
}

// discoFeatures returns the current advertised features.
func (s *Session) discoFeatures() *discoFeatures {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disco
}

// sendPresence sends the presence with the current caps on c.
func (s *Session) sendPresence(ctx context.Context, c *conn) error {
	s.presMu.Lock()
	defer s.presMu.Unlock()
	return c.write(ctx, []byte(s.discoFeatures().presenceXML(s.cfg.CapsNode)))
}

// newID returns a fresh stanza id.
func (s *Session) newID() string {
	return s.idPfx + strconv.FormatUint(s.idSeq.Add(1), 36)
}
