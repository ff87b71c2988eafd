// Service features (disco#info) and PEP notifications (+notify) of the
// pubsub client.

package xep0060

import (
	"context"
	"fmt"
	"slices"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// Features are what a service advertises in disco#info.
type Features struct {
	Vars map[string]bool
}

// Has reports whether the service advertises feature.
func (f *Features) Has(feature string) bool { return f != nil && f.Vars[feature] }

// RSMHint reports whether the service advertises RSM (a hint only: see
// RSMSupport for what replies showed).
func (f *Features) RSMHint() bool { return f.Has(wire.FeatureRSM) || f.Has(wire.FeaturePubSubRSM) }

// Features returns the disco#info features of service as seen by profile,
// cached until the profile reconnects.
func (c *Client) Features(ctx context.Context, profileName, service string) (*Features, error) {
	svc, err := c.Service(ctx, profileName, service)
	if err != nil {
		return nil, err
	}
	key := featureKey{profileName, svc}
	c.mu.Lock()
	f := c.features[key]
	c.mu.Unlock()
	if f != nil {
		return f, nil
	}
	s, err := c.session(profileName)
	if err != nil {
		return nil, err
	}
	tctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := s.SendIQRaw(tctx, svc, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
	if err != nil {
		return nil, fmt.Errorf("disco#info of %s: %w", svc, err)
	}
	f = &Features{Vars: map[string]bool{}}
	if di, ok := res.Payload.(*stanza.DiscoInfo); ok {
		for _, v := range di.Features {
			f.Vars[v.Var] = true
		}
	}
	c.mu.Lock()
	c.features[key] = f
	c.mu.Unlock()
	return f, nil
}

// forgetProfile drops what was cached for profile (on reconnection).
func (c *Client) forgetProfile(profileName string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.features {
		if k.profile == profileName {
			delete(c.features, k)
		}
	}
}

// WantNotify adds NODE+notify to the disco features of every session, so
// that PEP services send notifications of node (XEP-0163). Calls are
// counted: StopNotify removes the feature after as many calls.
func (c *Client) WantNotify(nodes ...string) {
	for _, n := range nodes {
		c.mu.Lock()
		c.notify[n]++
		first := c.notify[n] == 1
		c.mu.Unlock()
		if first && c.host.Sessions != nil {
			c.host.Sessions.AddFeatures(notifyOwner(n), n+"+notify")
		}
	}
}

// StopNotify undoes one WantNotify of each node.
func (c *Client) StopNotify(nodes ...string) {
	for _, n := range nodes {
		c.mu.Lock()
		last := false
		if c.notify[n] > 0 {
			c.notify[n]--
			last = c.notify[n] == 0
			if last {
				delete(c.notify, n)
			}
		}
		c.mu.Unlock()
		if last && c.host.Sessions != nil {
			c.host.Sessions.RemoveFeatures(notifyOwner(n))
		}
	}
}

// NotifyNodes lists the nodes with +notify, sorted.
func (c *Client) NotifyNodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.notify))
	for n := range c.notify {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func notifyOwner(node string) string { return ImportName + "/notify/" + node }

// notifyBus fires an observer event, logging observer errors.
func notifyBus[T any](ctx context.Context, c *Client, e *triggers.Event[T], v T) {
	if err := triggers.Notify(ctx, c.host.Bus, e, v); err != nil {
		c.log.Warn("observers failed", "event", e.ID(), "err", err)
	}
}
