package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"

	"example.org/backend/triggers"
)

var importNameRE = regexp.MustCompile(`^[a-z][a-z0-9_.]*$`)

// Plugins runs the lifecycle of a set of plugins (see [Plugin]).
type Plugins struct {
	host    *Host
	log     *slog.Logger
	mu      sync.Mutex
	order   []Plugin // start order, after a successful Start
	started []Plugin // plugins whose Init succeeded, in order
	handles map[string]*triggers.Handle
}

// NewPlugins prepares the lifecycle of plugins, listed in the daemon's order.
func NewPlugins(h *Host, plugins ...Plugin) *Plugins {
	return &Plugins{host: h, log: h.Log, order: plugins, handles: map[string]*triggers.Handle{}}
}

// Order resolves the start order of plugins: dependencies first, ties in
// the listed order. Missing dependencies, duplicates and cycles are errors
// naming the plugins; missing recommendations are logged as warnings.
func Order(log *slog.Logger, plugins []Plugin) ([]Plugin, error) {
	byName := make(map[string]int, len(plugins))
	for i, p := range plugins {
		in := p.Info()
		if !importNameRE.MatchString(in.ImportName) {
			return nil, fmt.Errorf("plugin %q: invalid import name %q (lowercase letters, digits, '_' and '.')", in.Name, in.ImportName)
		}
		if j, dup := byName[in.ImportName]; dup {
			return nil, fmt.Errorf("%w: %q (plugins %d and %d)", ErrDuplicatePlugin, in.ImportName, j, i)
		}
		byName[in.ImportName] = i
	}
	var errs []error
	deps := make([][]int, len(plugins))
	for i, p := range plugins {
		in := p.Info()
		for _, d := range in.Dependencies {
			j, ok := byName[d]
			if !ok {
				errs = append(errs, fmt.Errorf("%w: %q needs %q, which is not installed", ErrMissingDependency, in.ImportName, d))
				continue
			}
			deps[i] = append(deps[i], j)
		}
		for _, r := range in.Recommendations {
			j, ok := byName[r]
			if !ok {
				if log != nil {
					log.Warn("recommended plugin missing", "plugin", in.ImportName, "recommends", r)
				}
				continue
			}
			deps[i] = append(deps[i], j)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Depth-first topological order; visiting in the listed order keeps ties stable.
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(plugins))
	out := make([]Plugin, 0, len(plugins))
	var stack []string
	var visit func(i int) error
	visit = func(i int) error {
		name := plugins[i].Info().ImportName
		switch state[i] {
		case done:
			return nil
		case visiting:
			at := slices.Index(stack, name)
			return fmt.Errorf("%w: %s", ErrDependencyCycle, strings.Join(append(slices.Clone(stack[at:]), name), " → "))
		}
		state[i] = visiting
		stack = append(stack, name)
		for _, j := range deps[i] {
			if err := visit(j); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		out = append(out, plugins[i])
		return nil
	}
	for i := range plugins {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Start orders the plugins, initialises each and attaches its bindings. On
// failure the plugins already started are closed in reverse order.
func (ps *Plugins) Start(ctx context.Context) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	order, err := Order(ps.log, ps.order)
	if err != nil {
		return err
	}
	ps.order = order
	for _, p := range order {
		name := p.Info().ImportName
		if in, ok := p.(Initializer); ok {
			if err := in.Init(ctx, ps.host); err != nil {
				ps.closeLocked(ctx)
				return fmt.Errorf("init plugin %s: %w", name, err)
			}
		}
		ps.started = append(ps.started, p)
		if b, ok := p.(Binder); ok {
			h, err := ps.host.Bus.Attach(name, b.Bindings()...)
			if err != nil {
				ps.closeLocked(ctx)
				return fmt.Errorf("attach bindings of plugin %s: %w", name, err)
			}
			ps.handles[name] = h
		}
		ps.log.Debug("plugin started", "plugin", name)
	}
	return nil
}

// Started lists the running plugins in start order.
func (ps *Plugins) Started() []Plugin {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return slices.Clone(ps.started)
}

// ProfileConnecting runs every plugin's ProfileConnecting in start order and
// stops at the first error.
func (ps *Plugins) ProfileConnecting(ctx context.Context, p ProfileRef) error {
	for _, pl := range ps.Started() {
		if h, ok := pl.(ProfileConnector); ok {
			if err := h.ProfileConnecting(ctx, p); err != nil {
				return fmt.Errorf("plugin %s refused connecting profile %s: %w", pl.Info().ImportName, p.Name, err)
			}
		}
	}
	return nil
}

// ProfileConnected runs every plugin's ProfileConnected in parallel and
// waits for all; the errors are joined (each names its plugin).
func (ps *Plugins) ProfileConnected(ctx context.Context, p ProfileRef) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, pl := range ps.Started() {
		h, ok := pl.(ProfileConnectedHook)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := safeCall(func() error { return h.ProfileConnected(ctx, p) }); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("plugin %s, profile %s connected: %w", pl.Info().ImportName, p.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ProfileDisconnected runs every plugin's ProfileDisconnected, in reverse
// start order; errors are joined.
func (ps *Plugins) ProfileDisconnected(ctx context.Context, p ProfileRef) error {
	started := ps.Started()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		if h, ok := started[i].(ProfileDisconnectedHook); ok {
			if err := safeCall(func() error { return h.ProfileDisconnected(ctx, p) }); err != nil {
				errs = append(errs, fmt.Errorf("plugin %s, profile %s disconnected: %w", started[i].Info().ImportName, p.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close detaches the bindings of every started plugin and closes them in
// reverse start order. Errors are joined.
func (ps *Plugins) Close(ctx context.Context) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.closeLocked(ctx)
}

func (ps *Plugins) closeLocked(ctx context.Context) error {
	var errs []error
	for i := len(ps.started) - 1; i >= 0; i-- {
		p := ps.started[i]
		name := p.Info().ImportName
		if h := ps.handles[name]; h != nil {
			h.Remove()
			delete(ps.handles, name)
		}
		ps.host.Bus.DetachOwner(name)
		if c, ok := p.(Closer); ok {
			if err := safeCall(func() error { return c.Close(ctx) }); err != nil {
				errs = append(errs, fmt.Errorf("close plugin %s: %w", name, err))
			}
		}
		ps.log.Debug("plugin closed", "plugin", name)
	}
	ps.started = nil
	return errors.Join(errs...)
}

// safeCall turns a panic in plugin code into an error.
func safeCall(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}
