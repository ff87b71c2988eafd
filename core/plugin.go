package core

import (
	"context"
	"errors"

	"example.org/backend/triggers"
)

// Plugin is a built-in plugin, or an external one wrapped by the plugin host
// so that the core sees the same interfaces.
//
// Lifecycle, driven by [Plugins]:
//
//  1. The daemon lists its built-in plugins explicitly (no init() magic).
//  2. [Plugins.Start] orders them by their declared dependencies
//     (topologically; ties keep the listed order). A missing dependency or a
//     cycle is an error naming the plugins; a missing recommendation is a
//     warning.
//  3. In that order each plugin's optional Init runs, then its optional
//     Bindings are attached to the bus under its import name. A failure
//     closes the plugins already started, in reverse order.
//  4. For each profile: ProfileConnecting runs sequentially before the
//     stream is opened (an error aborts the connection), ProfileConnected
//     runs in parallel after bind and initial disco, ProfileDisconnected when
//     the session ends.
//  5. [Plugins.Close] detaches every binding of a plugin and calls its
//     optional Close, in reverse order.
type Plugin interface {
	Info() PluginInfo
}

// PluginInfo is a plugin's identity.
type PluginInfo struct {
	// Name is the human name ("XEP-0060 pubsub").
	Name string
	// ImportName is the stable identifier others depend on ("xep0060"):
	// lowercase letters, digits, '_' and '.'.
	ImportName string
	Version    string
	// Description is one sentence.
	Description string
	// Dependencies are import names that must be present and started first.
	Dependencies []string
	// Recommendations are import names started first when present.
	Recommendations []string
}

// Initializer is implemented by plugins that need set-up; Init receives the
// host's services.
type Initializer interface {
	Init(ctx context.Context, h *Host) error
}

// Binder is implemented by plugins that declare trigger bindings; the core
// attaches them under the plugin's import name and detaches them on close.
type Binder interface {
	Bindings() []triggers.Binding
}

// ProfileConnector is implemented by plugins that take part in connecting a
// profile: it runs sequentially, in start order, before the stream opens.
type ProfileConnector interface {
	ProfileConnecting(ctx context.Context, p ProfileRef) error
}

// ProfileConnectedHook runs in parallel for every plugin once a profile is
// connected (after bind and initial disco).
type ProfileConnectedHook interface {
	ProfileConnected(ctx context.Context, p ProfileRef) error
}

// ProfileDisconnectedHook runs when a profile's session ends.
type ProfileDisconnectedHook interface {
	ProfileDisconnected(ctx context.Context, p ProfileRef) error
}

// Closer is implemented by plugins holding resources.
type Closer interface {
	Close(ctx context.Context) error
}

// ProfileRef names a profile in lifecycle hooks.
type ProfileRef struct {
	Name string
	JID  string
}

// Lifecycle errors.
var (
	// ErrMissingDependency means a plugin depends on an import name that no
	// listed plugin provides.
	ErrMissingDependency = errors.New("missing plugin dependency")
	// ErrDependencyCycle means plugins depend on each other in a cycle.
	ErrDependencyCycle = errors.New("plugin dependency cycle")
	// ErrDuplicatePlugin means two plugins share an import name.
	ErrDuplicatePlugin = errors.New("duplicate plugin import name")
)
