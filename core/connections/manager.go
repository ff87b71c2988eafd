// Package connections keeps one XMPP session per connected profile: it
// builds sessions from the profiles' connection parameters, connects and
// disconnects them on request and at start-up (autoconnect), runs the
// plugins' profile hooks and the bus points around each connection, feeds
// incoming messages to the bus in arrival order, and reports states and
// counters.
package connections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/core/metrics"
	"example.org/backend/core/profiles"
	"example.org/backend/core/session"
	"example.org/backend/triggers"
)

// ProfileEvent names the profile a session point is about.
type ProfileEvent struct {
	Profile string
	// JID is the bare JID before binding, the bound full JID afterwards.
	JID string
	// Err is why the session ended (Disconnected only; nil after a requested stop).
	Err error
}

// StateChange is a change of a profile's session state.
type StateChange struct {
	Profile string
	// State is a session.State ("disconnected", "connecting", "connected",
	// "reconnecting", "failed", and "resumed" once streams resume).
	State string
	// Err caused the change (nil when nothing failed).
	Err error
	// JID is the bound full JID in the connected and resumed states
	// (empty otherwise).
	JID string
}

// Incoming is a stanza received by a profile's session.
type Incoming struct {
	Profile string
	Message *stanza.Message
}

// Bus points of the session layer.
var (
	// Connecting runs before each connection attempt of a profile, before
	// the stream opens. A handler may cancel it (the attempt fails and the
	// session stops).
	Connecting = triggers.NewPoint[ProfileEvent, struct{}]("session.connecting",
		"Before a profile's stream opens; cancel refuses the connection.")
	// Connected fires after bind and the initial presence, on every fresh
	// login (reconnections included), not when a stream is resumed.
	Connected = triggers.NewEvent[ProfileEvent]("session.connected",
		"A profile's session is connected (after bind and initial presence), also after each reconnection that logged in afresh.")
	// Resumed fires when a lost stream was resumed (XEP-0198): the same
	// bound JID, every stanza delivered, nothing to resynchronise. Neither
	// Disconnected nor Connected fired for that loss.
	Resumed = triggers.NewEvent[ProfileEvent]("session.resumed",
		"A profile's lost stream was resumed (XEP-0198): same JID, no stanza lost; no disconnection happened for plugins.")
	// Disconnected fires each time a profile's session ends: a stream lost
	// for good (at once when it cannot be resumed, else when its
	// resumption fails: Err wraps session.ErrResumptionFailed) or a stop.
	Disconnected = triggers.NewEvent[ProfileEvent]("session.disconnected",
		"A profile's session ended: its stream was lost and not resumed, or it was stopped (Err says why; nil when it was asked for).")
	// StateChanged fires on every change of a profile's session state.
	StateChanged = triggers.NewEvent[StateChange]("session.state",
		"A profile's session changed state (disconnected, connecting, connected, reconnecting, resumed, failed).")
	// MessageReceived fires for every message a session receives, in
	// arrival order, on the session's receive goroutine: observers must
	// hand heavy work off.
	MessageReceived = triggers.NewEvent[Incoming]("session.message",
		"A message arrived on a profile's session (in arrival order; observers must be quick).")
)

// Options tune the sessions (tests shorten the timings).
type Options struct {
	PingInterval time.Duration
	PingTimeout  time.Duration
	Timeout      time.Duration
	Backoff      func(attempt int) time.Duration
}

// Manager is the real core.Sessions.
type Manager struct {
	host     *core.Host
	profiles *profiles.Service
	plugins  *core.Plugins
	log      *slog.Logger
	opts     Options

	attempts    *metrics.Counter // connection attempts by kind and outcome
	resumptions *metrics.Counter // resumptions by outcome
	lost        prometheus.Counter

	mu       sync.Mutex
	sessions map[string]*session.Session
	iqBase   map[string]int64 // IQs sent by sessions of a profile that ended
	features map[string][]string
}

var _ core.Sessions = (*Manager)(nil)

// New returns a manager; it installs itself as the profiles' state lookup.
func New(h *core.Host, ps *profiles.Service, plugins *core.Plugins, opts Options) *Manager {
	m := &Manager{
		host: h, profiles: ps, plugins: plugins, log: h.Log.With("component", "sessions"), opts: opts,
		sessions: map[string]*session.Session{}, iqBase: map[string]int64{}, features: map[string][]string{},
	}
	m.declareMetrics()
	ps.SetStateFunc(m.State)
	ps.SetConnInfoFunc(m.ConnInfo)
	ps.SetBeforeDelete(func(ctx context.Context, name string) {
		if err := m.Disconnect(ctx, name); err != nil {
			m.log.Warn("disconnect of a deleted profile", "profile", name, "err", err)
		}
	})
	return m
}

// sessionStates are the states of a session, as the backend_sessions
// gauge lists them.
var sessionStates = []string{string(session.StateDisconnected), string(session.StateConnecting), string(session.StateConnected),
	string(session.StateReconnecting), string(session.StateFailed)}

// declareMetrics declares the session metrics and the iq_sent status
// counter.
func (m *Manager) declareMetrics() {
	h := m.host
	h.Counters.DeclareFunc(core.CounterIQSent, func() int64 {
		var total int64
		for _, n := range m.IQsSent() {
			total += n
		}
		return total
	})
	reg := h.Metrics
	var errs []error
	errs = append(errs, reg.GaugeFunc("core", metrics.Opts{
		Name:   "backend_sessions",
		Help:   "XMPP sessions the daemon holds, by state (a profile that was never connected, or was disconnected, has none).",
		Labels: []metrics.Label{{Name: "state", Values: sessionStates}},
	}, m.sessionsByState))
	var err error
	m.attempts, err = reg.Counter("core", metrics.Opts{
		Name: "backend_session_connection_attempts_total",
		Help: "XMPP connection attempts of the profiles' sessions: kind first (profile connect, autoconnect) or reconnect (after a lost stream), outcome ok or error (the log says why).",
		Labels: []metrics.Label{{Name: "kind", Values: []string{"first", "reconnect"}},
			{Name: "outcome", Values: []string{"ok", "error"}}},
	})
	errs = append(errs, err)
	lost, err := reg.Counter("core", metrics.Opts{
		Name: "backend_session_streams_lost_total",
		Help: "XMPP streams that ended without being asked to (network failure, server restart, missed pings); each one starts reconnection attempts.",
	})
	errs = append(errs, err)
	m.resumptions, err = reg.Counter("core", metrics.Opts{
		Name:   "backend_session_resumptions_total",
		Help:   "Lost XMPP streams that could be resumed (XEP-0198), by outcome: resumed (no disconnection for plugins) or failed (refused by the server or its window passed: a fresh login followed).",
		Labels: []metrics.Label{{Name: "outcome", Values: []string{"resumed", "failed"}}},
	})
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		m.log.Error("declare session metrics", "err", err)
	}
	if lost != nil {
		m.lost = lost.With()
	}
}

// sessionsByState counts the sessions by state for backend_sessions.
func (m *Manager) sessionsByState() []metrics.Sample {
	m.mu.Lock()
	ss := make([]*session.Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		ss = append(ss, s)
	}
	m.mu.Unlock()
	n := map[string]float64{}
	for _, s := range ss {
		n[string(s.State())]++
	}
	out := make([]metrics.Sample, 0, len(sessionStates))
	for _, st := range sessionStates {
		out = append(out, metrics.Sample{Values: []string{st}, Value: n[st]})
	}
	return out
}

// State is the session state of a profile ("disconnected" without session).
func (m *Manager) State(profile string) string {
	m.mu.Lock()
	s := m.sessions[profile]
	m.mu.Unlock()
	if s == nil {
		return profiles.StateDisconnected
	}
	return string(s.State())
}

// ConnInfo describes the live stream of a profile; false without one.
func (m *Manager) ConnInfo(profile string) (session.ConnInfo, bool) {
	m.mu.Lock()
	s := m.sessions[profile]
	m.mu.Unlock()
	if s == nil {
		return session.ConnInfo{}, false
	}
	return s.ConnInfo()
}

// Session implements core.Sessions.
func (m *Manager) Session(profile string) (core.XMPP, error) {
	m.mu.Lock()
	s := m.sessions[profile]
	m.mu.Unlock()
	if s == nil || s.State() != session.StateConnected {
		return nil, core.NotConnected(profile)
	}
	return s, nil
}

// IQsSent returns the IQs sent per profile since the daemon started.
func (m *Manager) IQsSent() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.iqBase)+len(m.sessions))
	for p, n := range m.iqBase {
		out[p] = n
	}
	for p, s := range m.sessions {
		out[p] += s.IQsSent()
	}
	return out
}

// ErrAlreadyConnected means Connect was called for a profile that has a
// session already.
var ErrAlreadyConnected = errors.New("profile already has a session")

// Connect opens the profile's session and waits for the first connection:
// an authentication failure (e.g. not-authorized) or an unreachable server
// is returned. Afterwards the session reconnects by itself until
// Disconnect. Connecting a profile that has a session is a no-op.
func (m *Manager) Connect(ctx context.Context, profile string) error {
	conn, err := m.profiles.ConnectionSettings(ctx, profile)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if _, ok := m.sessions[profile]; ok {
		m.mu.Unlock()
		return nil
	}
	s := session.New(session.Config{
		JID: conn.JID.Bare().String(), Password: conn.Password, Resource: conn.Resource,
		Host: conn.Host, Port: conn.Port, DirectTLS: conn.DirectTLS, DNSServer: conn.DNSServer,
		CAFile: conn.CAFile, InsecureSkipVerify: !conn.TLSVerify,
		Timeout: m.opts.Timeout, PingInterval: m.opts.PingInterval, PingTimeout: m.opts.PingTimeout, Backoff: m.opts.Backoff,
		Log: m.host.Log.With("profile", profile),
	}, m.handlers(profile, conn.JID.Bare().String(), func() string { return m.boundJID(profile) }))
	s.SetFeatures(m.identity(), m.featureListLocked())
	m.sessions[profile] = s
	m.mu.Unlock()
	if err := s.Start(ctx); err != nil {
		m.forget(profile, s)
		return connectError(conn, err)
	}
	return nil
}

// Disconnect closes the profile's session; without one it is a no-op.
func (m *Manager) Disconnect(ctx context.Context, profile string) error {
	m.mu.Lock()
	s := m.sessions[profile]
	m.mu.Unlock()
	if s == nil {
		return nil
	}
	err := s.Stop(ctx)
	m.forget(profile, s)
	return err
}

func (m *Manager) forget(profile string, s *session.Session) {
	m.mu.Lock()
	if m.sessions[profile] == s {
		delete(m.sessions, profile)
		m.iqBase[profile] += s.IQsSent()
	}
	m.mu.Unlock()
	m.notifyState(StateChange{Profile: profile, State: profiles.StateDisconnected})
}

// notifyState fires StateChanged (bridged to the API by EventBindings).
func (m *Manager) notifyState(c StateChange) {
	if err := triggers.Notify(context.Background(), m.host.Bus, StateChanged, c); err != nil {
		m.log.Warn("session.state observers", "profile", c.Profile, "err", err)
	}
}

// Autoconnect connects, in the background, every profile whose
// connection.autoconnect is true. Failures are logged and published.
func (m *Manager) Autoconnect(ctx context.Context) {
	list, err := m.profiles.List(ctx)
	if err != nil {
		m.log.Error("autoconnect: list profiles", "err", err)
		return
	}
	for _, p := range list {
		if !p.Autoconnect {
			continue
		}
		go func() {
			if err := m.Connect(ctx, p.Name); err != nil {
				m.log.Warn("autoconnect failed", "profile", p.Name, "err", err)
			}
		}()
	}
}

// Close stops every session.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	names := make([]string, 0, len(m.sessions))
	for n := range m.sessions {
		names = append(names, n)
	}
	m.mu.Unlock()
	var errs []error
	for _, n := range names {
		if err := m.Disconnect(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// boundJID is the full JID the profile's session bound last ("" none).
func (m *Manager) boundJID(profile string) string {
	m.mu.Lock()
	s := m.sessions[profile]
	m.mu.Unlock()
	if s == nil {
		return ""
	}
	return s.JID()
}

// handlers are the session callbacks of a profile; bound returns the full
// JID its session bound.
func (m *Manager) handlers(profile, bare string, bound func() string) session.Handlers {
	ref := core.ProfileRef{Name: profile, JID: bare}
	return session.Handlers{
		Connecting: func(ctx context.Context) error {
			out, err := triggers.Run(ctx, m.host.Bus, Connecting, ProfileEvent{Profile: profile, JID: bare})
			if err != nil {
				return err
			}
			if out.Cancelled() {
				return fmt.Errorf("connection of profile %s cancelled by %s", profile, out.By)
			}
			return m.plugins.ProfileConnecting(ctx, ref)
		},
		Connected: func(ctx context.Context, bound string) {
			ev := ProfileEvent{Profile: profile, JID: bound}
			if err := triggers.Notify(ctx, m.host.Bus, Connected, ev); err != nil {
				m.log.Warn("session.connected observers", "profile", profile, "err", err)
			}
			if err := m.plugins.ProfileConnected(ctx, core.ProfileRef{Name: profile, JID: bound}); err != nil {
				m.log.Warn("profile connected hooks", "profile", profile, "err", err)
			}
		},
		Attempted: func(reconnect bool, err error) {
			if m.attempts == nil {
				return
			}
			kind, outcome := "first", "ok"
			if reconnect {
				kind = "reconnect"
			}
			if err != nil {
				outcome = "error"
			}
			m.attempts.With(kind, outcome).Inc()
		},
		Resumed: func(jid string) {
			if m.resumptions != nil {
				m.resumptions.With("resumed").Inc()
			}
			if err := triggers.Notify(context.Background(), m.host.Bus, Resumed, ProfileEvent{Profile: profile, JID: jid}); err != nil {
				m.log.Warn("session.resumed observers", "profile", profile, "err", err)
			}
		},
		Disconnected: func(err error) {
			if errors.Is(err, session.ErrResumptionFailed) && m.resumptions != nil {
				m.resumptions.With("failed").Inc()
			}
			ctx := context.Background()
			if nerr := triggers.Notify(ctx, m.host.Bus, Disconnected, ProfileEvent{Profile: profile, JID: bare, Err: err}); nerr != nil {
				m.log.Warn("session.disconnected observers", "profile", profile, "err", nerr)
			}
			if herr := m.plugins.ProfileDisconnected(ctx, ref); herr != nil {
				m.log.Warn("profile disconnected hooks", "profile", profile, "err", herr)
			}
		},
		StateChanged: func(st session.State, err error) {
			if st == session.StateReconnecting && m.lost != nil {
				m.lost.Inc()
			}
			c := StateChange{Profile: profile, State: string(st), Err: err}
			if st == session.StateConnected || st == session.StateResumed {
				c.JID = bound()
			}
			m.notifyState(c)
		},
		Message: func(msg *stanza.Message) {
			if err := triggers.Notify(context.Background(), m.host.Bus, MessageReceived, Incoming{Profile: profile, Message: msg}); err != nil {
				m.log.Warn("session.message observers", "profile", profile, "err", err)
			}
		},
	}
}

// AddFeatures implements core.Sessions.
func (m *Manager) AddFeatures(owner string, features ...string) {
	m.mu.Lock()
	m.features[owner] = append(m.features[owner], features...)
	m.mu.Unlock()
	m.pushFeatures()
}

// RemoveFeatures implements core.Sessions.
func (m *Manager) RemoveFeatures(owner string) {
	m.mu.Lock()
	delete(m.features, owner)
	m.mu.Unlock()
	m.pushFeatures()
}

func (m *Manager) pushFeatures() {
	m.mu.Lock()
	list := m.featureListLocked()
	ss := make([]*session.Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		ss = append(ss, s)
	}
	m.mu.Unlock()
	for _, s := range ss {
		s.SetFeatures(m.identity(), list)
	}
}

func (m *Manager) featureListLocked() []string {
	seen := map[string]bool{}
	var out []string
	for _, fs := range m.features {
		for _, f := range fs {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (m *Manager) identity() session.Identity {
	return session.Identity{Category: "client", Type: "pc", Name: "backend " + m.host.Version}
}
