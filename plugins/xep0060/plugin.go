// Package xep0060 is the built-in XEP-0060 publish-subscribe plugin: items
// requests (max_items, item ids, sub id, XEP-0059 RSM, XEP-0413 order-by),
// publish with publish-options, retract, subscriptions, node management,
// service feature discovery, and the routing of notifications into bus
// events. It owns the trigger points other plugins bind (see points.go) and
// exports its client API (*Client) to plugins that declare "xep0060" as a
// dependency, e.g. the pubsub cache. Payloads are kept byte for byte (see
// package wire).
//
// Every items request of a frontend or a plugin goes through the return
// point GetItems before the network, so that a handler (the cache) may
// answer it; Request.NoCache is visible to handlers. Items requests sent to
// a service are counted in core.CounterPubsubItemsRequests.
package xep0060

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core"
	"example.org/backend/core/connections"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// ImportName is the plugin's import name.
const ImportName = "xep0060"

// Version is the plugin's version.
const Version = "0.1.0"

// MaxMessageBytes is the largest API message the pubsub service sends (an
// items answer of many large items is well above gRPC's usual 4 MiB); the
// CLI reads answers up to the same bound. Requests are bounded by
// api.max_request_bytes like every route (core.APIRegistry.HandlerOptions).
const MaxMessageBytes = 256 << 20

// Plugin is the built-in pubsub plugin.
type Plugin struct {
	c      *Client
	router *router
}

var (
	_ core.Initializer             = (*Plugin)(nil)
	_ core.Binder                  = (*Plugin)(nil)
	_ core.ProfileConnectedHook    = (*Plugin)(nil)
	_ core.ProfileDisconnectedHook = (*Plugin)(nil)
	_ core.Closer                  = (*Plugin)(nil)
)

// New returns the plugin; its Client is usable once the plugin started.
func New() *Plugin { return &Plugin{} }

// Info implements core.Plugin.
func (p *Plugin) Info() core.PluginInfo {
	return core.PluginInfo{
		Name:        "XEP-0060 publish-subscribe",
		ImportName:  ImportName,
		Version:     Version,
		Description: "Pubsub client (RSM, publish-options, node management) and routing of pubsub notifications into the bus.",
	}
}

// Client is the pubsub client API (nil before Init).
func (p *Plugin) Client() *Client { return p.c }

// Init registers the raw pubsub decoders and the API service.
func (p *Plugin) Init(ctx context.Context, h *core.Host) error {
	wire.Register()
	p.c = newClient(h)
	p.router = newRouter(p.c)
	p.c.router = p.router
	if h.API != nil {
		path, handler := backendv1connect.NewPubSubServiceHandler(&api{c: p.c},
			h.API.HandlerOptions(connect.WithSendMaxBytes(MaxMessageBytes))...)
		if err := h.API.Register(ImportName, path, handler); err != nil {
			return fmt.Errorf("register pubsub api: %w", err)
		}
		path, handler = backendv2connect.NewPubSubServiceHandler(&apiV2{c: p.c},
			h.API.HandlerOptions(connect.WithSendMaxBytes(MaxMessageBytes))...)
		if err := h.API.Register(ImportName, path, handler); err != nil {
			return fmt.Errorf("register pubsub api v2: %w", err)
		}
	}
	return nil
}

// Bindings route every received message through the pubsub event parser
// and bridge the notification events to the API's event stream.
func (p *Plugin) Bindings() []triggers.Binding {
	return append([]triggers.Binding{
		triggers.Observe(connections.MessageReceived, triggers.PriorityDefault, func(ctx context.Context, in connections.Incoming) error {
			p.router.message(in.Profile, in.Message)
			return nil
		}),
	}, eventBindings(p.c.host.Events)...)
}

// ProfileConnected forgets the features cached for the profile (they are
// discovered again on next use) and remembers its bare JID.
func (p *Plugin) ProfileConnected(ctx context.Context, ref core.ProfileRef) error {
	p.c.forgetProfile(ref.Name)
	p.c.mu.Lock()
	p.c.jids[ref.Name] = bare(ref.JID)
	p.c.mu.Unlock()
	return nil
}

// ProfileDisconnected forgets the profile's cached features.
func (p *Plugin) ProfileDisconnected(ctx context.Context, ref core.ProfileRef) error {
	p.c.forgetProfile(ref.Name)
	return nil
}

// Close stops the notification workers.
func (p *Plugin) Close(ctx context.Context) error {
	if p.router != nil {
		p.router.stop()
	}
	return nil
}
