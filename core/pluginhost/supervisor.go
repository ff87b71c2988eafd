// Package pluginhost supervises the daemon's external plugin processes: it
// starts each one (first-party plugins by re-executing the daemon, third-party
// executables found in the plugin directories), asks it to describe itself,
// pings it, restarts it with capped exponential backoff when it exits or
// hangs, and kills every process on Close. Calls go through the
// plugin-sdk/host client of a running plugin; while a plugin is down they
// fail promptly with ErrPluginDown, so callers can keep raw data and retry.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"time"

	"example.org/backend/plugin-sdk/host"
	"example.org/backend/triggers"
)

// StateChanged fires each time an external plugin changes state (the
// daemon fires it from Options.OnState).
var StateChanged = triggers.NewEvent[Status]("plugin.state",
	"An external plugin changed state (starting, running, restarting, failed, stopped).")

// ErrPluginDown is wrapped by the errors about a plugin that is not running
// (starting, restarting, failed, or crashed during the call). It is
// host.ErrPluginDown, so errors from calls on a client match it too.
var ErrPluginDown = host.ErrPluginDown

// ErrUnknownPlugin is wrapped by the errors about a name no spec has.
var ErrUnknownPlugin = errors.New("unknown plugin")

// State is the supervision state of a plugin.
type State string

// The states of a plugin.
const (
	// StateStarting: the first start is in progress.
	StateStarting State = "starting"
	// StateRunning: the process runs and answers.
	StateRunning State = "running"
	// StateRestarting: the process exited or stopped answering; a new one
	// starts after a backoff.
	StateRestarting State = "restarting"
	// StateFailed: the plugin cannot start (refused checksum, protocol
	// mismatch, or too many failures in a row); only Restart tries again.
	StateFailed State = "failed"
	// StateStopped: the supervisor was closed.
	StateStopped State = "stopped"
)

// Spec says how to run one plugin.
type Spec struct {
	// Name identifies the plugin (`backend plugins list`, Client, Restart).
	Name string
	// Cmd returns a fresh, unstarted command for each start.
	Cmd func() *exec.Cmd
	// SHA256 optionally pins the executable's checksum (hex); a mismatch
	// fails the plugin without running it.
	SHA256 string
	// FirstParty marks the plugins built into the daemon (re-exec).
	FirstParty bool
}

// Status describes a plugin for people and the API.
type Status struct {
	Name string
	// Version is the plugin's own version ("" until it described itself).
	Version string
	State   State
	// PID is the process id while running, else 0.
	PID int
	// Analysers are the names of the analysers it declared.
	Analysers []string
	// Restarts counts the starts after the first one.
	Restarts   int
	FirstParty bool
	// LastError is the last start or health failure ("" if none).
	LastError string
}

// Options tune a Supervisor; zero values take the defaults.
type Options struct {
	// Logger receives supervision logs and the plugins' own logs.
	Logger *slog.Logger
	// PingInterval is the period of health checks (default 10 s), and
	// PingTimeout the time a ping may take (default 5 s). Two failed pings
	// in a row kill the process, which is then restarted.
	PingInterval, PingTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before a restart (defaults
	// 500 ms and 1 min); it doubles after each failure and resets once the
	// plugin has run for StableAfter (default 1 min).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// MaxFailures is the number of failed starts in a row after which the
	// plugin is marked failed (default 5).
	MaxFailures int
	// StartTimeout and CallTimeout are passed to host.Config.
	StartTimeout, CallTimeout time.Duration
	// OnCall, when set, is told about every call to a plugin (its name, the
	// protocol method, the duration and the error): host.Config.OnCall.
	OnCall func(plugin, method string, elapsed time.Duration, err error)
	// OnStart runs after each successful start and Describe, before the
	// plugin is marked running: the daemon registers the description and
	// sends Configure for every profile there. An error counts as a failed
	// start.
	OnStart func(ctx context.Context, name string, c *host.Client, d host.Description) error
	// OnRunning runs each time the plugin is marked running (calls go
	// through from then on), before Start or Restart return: the daemon
	// installs the plugin as its analysers' provider and wakes what waited
	// for it.
	OnRunning func(name string)
	// OnState, when set, is told each time a plugin's state changes, with
	// its status then (outside the supervisor's locks; it must not block):
	// the daemon fires StateChanged on the bus.
	OnState func(Status)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PingInterval, 10*time.Second)
	def(&o.PingTimeout, 5*time.Second)
	def(&o.MinBackoff, 500*time.Millisecond)
	def(&o.MaxBackoff, time.Minute)
	def(&o.StableAfter, time.Minute)
	if o.MaxFailures <= 0 {
		o.MaxFailures = 5
	}
}

// Supervisor runs and watches a set of plugins.
type Supervisor struct {
	opts    Options
	plugins map[string]*supervised
	names   []string
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	mu      sync.Mutex // guards started
}

// supervised is one plugin and its supervision state.
type supervised struct {
	spec    Spec
	restart chan chan struct{} // Restart requests; the reply is closed once handled

	mu       sync.Mutex
	state    State
	client   *host.Client
	desc     host.Description
	restarts int
	lastErr  string
	ready    chan struct{} // closed after the first start attempt
}

// New returns a supervisor for specs (unique, non-empty names, a Cmd each).
// Nothing starts before Start.
func New(specs []Spec, opts Options) (*Supervisor, error) {
	opts.defaults()
	s := &Supervisor{opts: opts, plugins: map[string]*supervised{}}
	for _, sp := range specs {
		if sp.Name == "" || sp.Cmd == nil {
			return nil, fmt.Errorf("plugin spec %q: a name and a command are required", sp.Name)
		}
		if _, dup := s.plugins[sp.Name]; dup {
			return nil, fmt.Errorf("plugin %q is configured twice", sp.Name)
		}
		s.plugins[sp.Name] = &supervised{spec: sp, state: StateStarting, restart: make(chan chan struct{}), ready: make(chan struct{})}
		s.names = append(s.names, sp.Name)
	}
	sort.Strings(s.names)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start starts every plugin and returns once each has made its first
// attempt (or ctx is done). Plugins that fail to start are retried in the
// background or marked failed; Plugins tells. Start must be called once.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("plugin supervisor already started")
	}
	s.started = true
	s.mu.Unlock()
	for _, name := range s.names {
		p := s.plugins[name]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.run(p)
		}()
	}
	for _, name := range s.names {
		select {
		case <-s.plugins[name].ready:
		case <-ctx.Done():
			return fmt.Errorf("start plugins: %w", ctx.Err())
		}
	}
	return nil
}

// Close kills every plugin process and stops supervising; it returns once
// all processes are gone. Use it on every exit path of the daemon.
func (s *Supervisor) Close() {
	s.cancel()
	s.wg.Wait()
	for _, name := range s.names {
		s.update(s.plugins[name], func() {
			p := s.plugins[name]
			if c := p.client; c != nil {
				c.Kill()
			}
			p.client, p.state = nil, StateStopped
		})
	}
}

// Plugins returns the status of every plugin, by name.
func (s *Supervisor) Plugins() []Status {
	out := make([]Status, 0, len(s.names))
	for _, name := range s.names {
		p := s.plugins[name]
		p.mu.Lock()
		st := p.statusLocked()
		p.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// statusLocked is p's status (p.mu held).
func (p *supervised) statusLocked() Status {
	st := Status{Name: p.spec.Name, Version: p.desc.Version, State: p.state, Restarts: p.restarts,
		FirstParty: p.spec.FirstParty, LastError: p.lastErr, Analysers: []string{}}
	for _, a := range p.desc.Analysers {
		st.Analysers = append(st.Analysers, a.Name)
	}
	if p.state == StateRunning && p.client != nil {
		st.PID = p.client.Pid()
	}
	return st
}

// Description returns the last description the plugin gave (ok false
// before its first successful start). It survives crashes and restarts.
func (s *Supervisor) Description(name string) (host.Description, bool) {
	p, ok := s.plugins[name]
	if !ok {
		return host.Description{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc, p.desc.Name != ""
}

// Client returns the client of a running plugin, or an error wrapping
// ErrPluginDown (not running) or ErrUnknownPlugin. The client may still
// fail a call with ErrPluginDown if the process dies meanwhile.
func (s *Supervisor) Client(name string) (*host.Client, error) {
	p, ok := s.plugins[name]
	if !ok {
		return nil, fmt.Errorf("plugin %q: %w", name, ErrUnknownPlugin)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != StateRunning || p.client == nil || p.client.Exited() {
		return nil, fmt.Errorf("plugin %s is %s: %w", name, p.state, ErrPluginDown)
	}
	return p.client, nil
}

// Restart kills the plugin's process (if any) and starts a new one at once,
// also for a failed plugin. It returns when the new start was attempted.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	p, ok := s.plugins[name]
	if !ok {
		return fmt.Errorf("restart plugin %q: %w", name, ErrUnknownPlugin)
	}
	done := make(chan struct{})
	select {
	case p.restart <- done:
	case <-s.ctx.Done():
		return errors.New("restart plugin " + name + ": the supervisor is closed")
	case <-ctx.Done():
		return fmt.Errorf("restart plugin %s: %w", name, ctx.Err())
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("restart plugin %s: %w", name, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != StateRunning {
		return fmt.Errorf("restart plugin %s: %s", name, p.lastErr)
	}
	return nil
}

func (p *supervised) set(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// update runs f under p's lock and tells OnState when f changed p's state.
func (s *Supervisor) update(p *supervised, f func()) {
	p.mu.Lock()
	before := p.state
	f()
	changed := p.state != before
	var st Status
	if changed {
		st = p.statusLocked()
	}
	p.mu.Unlock()
	if changed && s.opts.OnState != nil {
		s.opts.OnState(st)
	}
}

// permanent reports start errors that retrying cannot fix.
func permanent(err error) bool {
	var ve *host.VersionError
	return errors.Is(err, host.ErrChecksumMismatch) || errors.As(err, &ve) || errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist)
}

// run supervises p until the supervisor closes.
func (s *Supervisor) run(p *supervised) {
	log := s.opts.Logger.With("plugin", p.spec.Name)
	backoff := s.opts.MinBackoff
	failures := 0
	first := true
	var ack chan struct{} // a pending Restart's reply
	reply := func() {
		if ack != nil {
			close(ack)
			ack = nil
		}
	}
	defer reply()
	markReady := func() {
		if first {
			close(p.ready)
			first = false
		}
	}
	for {
		if !first {
			p.set(func() { p.restarts++ })
		}
		c, d, err := s.startOne(p, log)
		if err != nil {
			failures++
			failed := permanent(err) || failures >= s.opts.MaxFailures
			s.update(p, func() {
				p.lastErr = err.Error()
				p.state = StateRestarting
				if failed {
					p.state = StateFailed
				}
			})
			reply()
			markReady()
			if failed {
				log.Error("plugin failed; it will not be restarted until asked", "error", err, "failures", failures)
				select {
				case <-s.ctx.Done():
					return
				case ack = <-p.restart:
					failures, backoff = 0, s.opts.MinBackoff
					continue
				}
			}
			log.Warn("plugin did not start; retrying", "error", err, "in", backoff)
			if !s.sleep(p, backoff, &ack) {
				return
			}
			if ack == nil {
				backoff = min(backoff*2, s.opts.MaxBackoff)
			} else {
				failures, backoff = 0, s.opts.MinBackoff
			}
			continue
		}
		s.update(p, func() { p.client, p.desc, p.state, p.lastErr = c, d, StateRunning, "" })
		if s.opts.OnRunning != nil {
			s.opts.OnRunning(p.spec.Name)
		}
		reply()
		markReady()
		log.Info("plugin running", "version", d.Version, "pid", c.Pid(), "analysers", len(d.Analysers))
		startedAt := time.Now()
		why, requested := s.watch(p, c, log, &ack)
		c.Kill()
		s.update(p, func() {
			p.client = nil
			p.state = StateRestarting
			if why != "" {
				p.lastErr = why
			}
		})
		if s.ctx.Err() != nil {
			return
		}
		if requested {
			failures, backoff = 0, s.opts.MinBackoff
			continue
		}
		if time.Since(startedAt) >= s.opts.StableAfter {
			failures, backoff = 0, s.opts.MinBackoff
		} else {
			failures++
		}
		if failures >= s.opts.MaxFailures {
			s.update(p, func() { p.state = StateFailed })
			log.Error("plugin keeps failing; it will not be restarted until asked", "reason", why, "failures", failures)
			select {
			case <-s.ctx.Done():
				return
			case ack = <-p.restart:
				failures, backoff = 0, s.opts.MinBackoff
				continue
			}
		}
		log.Warn("plugin stopped; restarting", "reason", why, "in", backoff)
		if !s.sleep(p, backoff, &ack) {
			return
		}
		if ack == nil {
			backoff = min(backoff*2, s.opts.MaxBackoff)
		}
	}
}

// sleep waits d, or until a Restart request (stored in ack) or Close
// (returns false).
func (s *Supervisor) sleep(p *supervised, d time.Duration, ack *chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
	case *ack = <-p.restart:
	}
	return true
}

// startOne starts the process, describes it and runs OnStart.
func (s *Supervisor) startOne(p *supervised, log *slog.Logger) (*host.Client, host.Description, error) {
	ctx := s.ctx
	cmd := p.spec.Cmd()
	if cmd == nil {
		return nil, host.Description{}, fmt.Errorf("plugin %s: no command", p.spec.Name)
	}
	var onCall func(string, time.Duration, error)
	if f := s.opts.OnCall; f != nil {
		name := p.spec.Name
		onCall = func(method string, d time.Duration, err error) { f(name, method, d, err) }
	}
	c, err := host.Start(ctx, host.Config{
		Name: p.spec.Name, Cmd: cmd, SHA256: p.spec.SHA256, Logger: s.opts.Logger,
		StartTimeout: s.opts.StartTimeout, CallTimeout: s.opts.CallTimeout, OnCall: onCall,
	})
	if err != nil {
		return nil, host.Description{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, s.opts.PingTimeout)
	d, err := c.Describe(dctx)
	cancel()
	if err != nil {
		c.Kill()
		return nil, host.Description{}, fmt.Errorf("plugin %s: describe: %w", p.spec.Name, err)
	}
	if s.opts.OnStart != nil {
		if err := s.opts.OnStart(ctx, p.spec.Name, c, d); err != nil {
			c.Kill()
			return nil, host.Description{}, fmt.Errorf("plugin %s: after start: %w", p.spec.Name, err)
		}
	}
	return c, d, nil
}

// watch returns when the process exits, stops answering pings, a restart is
// requested (requested true; the request is stored in ack) or the
// supervisor closes; why says which.
func (s *Supervisor) watch(p *supervised, c *host.Client, log *slog.Logger, ack *chan struct{}) (why string, requested bool) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-s.ctx.Done():
			return "", false
		case <-c.Done():
			return "the plugin process exited", false
		case *ack = <-p.restart:
			return "restart requested", true
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, s.opts.PingTimeout)
			err := c.Ping(ctx)
			cancel()
			if err == nil {
				missed = 0
				continue
			}
			if s.ctx.Err() != nil {
				return "", false
			}
			missed++
			log.Warn("plugin did not answer a ping", "error", err, "missed", missed)
			if missed >= 2 || errors.Is(err, ErrPluginDown) {
				return "the plugin stopped answering: " + err.Error(), false
			}
		}
	}
}

// Names returns the names of the supervised plugins, sorted.
func (s *Supervisor) Names() []string { return slices.Clone(s.names) }
