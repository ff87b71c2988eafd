// Subscriptions and node operations of the pubsub client.

package xep0060

import (
	"context"
	"fmt"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/plugins/xep0060/wire"
)

// ownJID is the bare JID of a connected profile.
func (c *Client) ownJID(profileName string) (string, error) {
	s, err := c.session(profileName)
	if err != nil {
		return "", err
	}
	return bare(s.JID()), nil
}

// Subscribe subscribes the profile's bare JID to node.
func (c *Client) Subscribe(ctx context.Context, profileName, service, node string) (wire.Subscription, error) {
	if node == "" {
		return wire.Subscription{}, fmt.Errorf("%w: no node", ErrInvalidRequest)
	}
	svc, err := c.Service(ctx, profileName, service)
	if err != nil {
		return wire.Subscription{}, err
	}
	jid, err := c.ownJID(profileName)
	if err != nil {
		return wire.Subscription{}, err
	}
	ps, err := c.iq(ctx, profileName, svc, "set", wire.Subscribe(node, jid))
	if err != nil {
		return wire.Subscription{}, fmt.Errorf("subscribe to %s on %s: %w", node, svc, err)
	}
	sub := wire.Subscription{Node: node, JID: jid, Subscription: "subscribed"}
	if ps != nil {
		subs, err := wire.ParseSubscriptions(ps.Inner)
		if err != nil {
			return wire.Subscription{}, fmt.Errorf("subscribe to %s on %s: %w: %v", node, svc, ErrBadReply, err)
		}
		if len(subs) > 0 {
			sub = subs[0]
			if sub.Node == "" {
				sub.Node = node
			}
		}
	}
	return sub, nil
}

// Unsubscribe removes the profile's subscription to node (subID may be
// empty).
func (c *Client) Unsubscribe(ctx context.Context, profileName, service, node, subID string) error {
	if node == "" {
		return fmt.Errorf("%w: no node", ErrInvalidRequest)
	}
	svc, err := c.Service(ctx, profileName, service)
	if err != nil {
		return err
	}
	jid, err := c.ownJID(profileName)
	if err != nil {
		return err
	}
	if _, err := c.iq(ctx, profileName, svc, "set", wire.Unsubscribe(node, jid, subID)); err != nil {
		return fmt.Errorf("unsubscribe from %s on %s: %w", node, svc, err)
	}
	// No notification tells (the service sends none to the unsubscriber).
	notifyBus(ctx, c, NodeChanged, &NodeChangedEvent{Profile: profileName, Service: svc, Node: node, Op: "unsubscribe"})
	return nil
}

// Subscriptions lists the profile's subscriptions on service (to node only
// when node is not empty).
func (c *Client) Subscriptions(ctx context.Context, profileName, service, node string) ([]wire.Subscription, error) {
	svc, err := c.Service(ctx, profileName, service)
	if err != nil {
		return nil, err
	}
	ps, err := c.iq(ctx, profileName, svc, "get", wire.Subscriptions(node))
	if err != nil {
		return nil, fmt.Errorf("subscriptions on %s: %w", svc, err)
	}
	if ps == nil {
		return []wire.Subscription{}, nil
	}
	subs, err := wire.ParseSubscriptions(ps.Inner)
	if err != nil {
		return nil, fmt.Errorf("subscriptions on %s: %w: %v", svc, ErrBadReply, err)
	}
	return subs, nil
}

// NodeRequest names a node, with configuration options for create and
// configure (field var → values).
type NodeRequest struct {
	Profile string
	Service string
	Node    string
	Options map[string][]string
}

func (c *Client) nodeOp(ctx context.Context, req NodeRequest, op, payload string) error {
	if req.Node == "" {
		return fmt.Errorf("%w: no node", ErrInvalidRequest)
	}
	if _, err := c.iq(ctx, req.Profile, req.Service, "set", payload); err != nil {
		return fmt.Errorf("%s node %s on %s: %w", op, req.Node, req.Service, err)
	}
	notifyBus(ctx, c, NodeChanged, &NodeChangedEvent{Profile: req.Profile, Service: req.Service, Node: req.Node, Op: op, Options: req.Options})
	return nil
}

func (c *Client) resolve(ctx context.Context, req *NodeRequest) error {
	svc, err := c.Service(ctx, req.Profile, req.Service)
	if err != nil {
		return err
	}
	req.Service = svc
	return nil
}

// CreateNode creates a node with an optional configuration.
func (c *Client) CreateNode(ctx context.Context, req NodeRequest) error {
	if err := c.resolve(ctx, &req); err != nil {
		return err
	}
	return c.nodeOp(ctx, req, "create", wire.Create(req.Node, req.Options))
}

// DeleteNode deletes a node.
func (c *Client) DeleteNode(ctx context.Context, req NodeRequest) error {
	if err := c.resolve(ctx, &req); err != nil {
		return err
	}
	return c.nodeOp(ctx, req, "delete", wire.Delete(req.Node))
}

// PurgeNode removes every item of a node.
func (c *Client) PurgeNode(ctx context.Context, req NodeRequest) error {
	if err := c.resolve(ctx, &req); err != nil {
		return err
	}
	return c.nodeOp(ctx, req, "purge", wire.Purge(req.Node))
}

// ConfigureNode submits configuration options.
func (c *Client) ConfigureNode(ctx context.Context, req NodeRequest) error {
	if len(req.Options) == 0 {
		return fmt.Errorf("%w: configure without options", ErrInvalidRequest)
	}
	if err := c.resolve(ctx, &req); err != nil {
		return err
	}
	return c.nodeOp(ctx, req, "configure", wire.ConfigureSet(req.Node, req.Options))
}

// NodeConfig returns the fields of a node's configuration form.
func (c *Client) NodeConfig(ctx context.Context, req NodeRequest) ([]wire.Field, error) {
	if req.Node == "" {
		return nil, fmt.Errorf("%w: no node", ErrInvalidRequest)
	}
	if err := c.resolve(ctx, &req); err != nil {
		return nil, err
	}
	ps, err := c.iq(ctx, req.Profile, req.Service, "get", wire.ConfigureGet(req.Node))
	if err != nil {
		return nil, fmt.Errorf("configuration of node %s on %s: %w", req.Node, req.Service, err)
	}
	if ps == nil {
		return nil, fmt.Errorf("configuration of node %s on %s: %w: no <pubsub/>", req.Node, req.Service, ErrBadReply)
	}
	_, fields, err := wire.ParseConfigure(ps.Inner)
	if err != nil {
		return nil, fmt.Errorf("configuration of node %s on %s: %w: %v", req.Node, req.Service, ErrBadReply, err)
	}
	if fields == nil {
		fields = []wire.Field{}
	}
	return fields, nil
}

// DefaultConfig reads the service's default node configuration (XEP-0060
// §8.3): what a node created there without options has. Both Prosody and
// ejabberd answer any entity, on PEP services too.
func (c *Client) DefaultConfig(ctx context.Context, profileName, service string) ([]wire.Field, error) {
	req := NodeRequest{Profile: profileName, Service: service}
	if err := c.resolve(ctx, &req); err != nil {
		return nil, err
	}
	ps, err := c.iq(ctx, req.Profile, req.Service, "get", wire.DefaultGet())
	if err != nil {
		return nil, fmt.Errorf("default node configuration of %s: %w", req.Service, err)
	}
	if ps == nil {
		return nil, fmt.Errorf("default node configuration of %s: %w: no <pubsub/>", req.Service, ErrBadReply)
	}
	fields, err := wire.ParseDefault(ps.Inner)
	if err != nil {
		return nil, fmt.Errorf("default node configuration of %s: %w: %v", req.Service, ErrBadReply, err)
	}
	return fields, nil
}

// ItemIDs lists the ids of a node's items with disco#items on the node
// (XEP-0060 §5.5): one cheap request, no payloads. The order is the
// service's (ejabberd sorts PEP items by id, not in node order).
func (c *Client) ItemIDs(ctx context.Context, profileName, service, node string) ([]string, error) {
	svc, err := c.Service(ctx, profileName, service)
	if err != nil {
		return nil, err
	}
	s, err := c.session(profileName)
	if err != nil {
		return nil, err
	}
	tctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := s.SendIQRaw(tctx, svc, "get", "<query xmlns='http://jabber.org/protocol/disco#items' node='"+wire.EscapeAttr(node)+"'/>")
	if err != nil {
		return nil, fmt.Errorf("item ids of %s on %s: %w", node, svc, err)
	}
	di, ok := res.Payload.(*stanza.DiscoItems)
	if !ok {
		return nil, fmt.Errorf("item ids of %s on %s: %w: no disco#items answer", node, svc, ErrBadReply)
	}
	ids := make([]string, 0, len(di.Items))
	for _, it := range di.Items {
		if it.Name != "" {
			ids = append(ids, it.Name)
		}
	}
	return ids, nil
}
