package xep0060

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/core/jid"
	"example.org/backend/core/session"
	"example.org/backend/ent/profile"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// DefaultTimeout bounds a pubsub request whose context has no deadline.
const DefaultTimeout = 60 * time.Second

// Errors of the client.
var (
	// ErrOrderByUnsupported means order_by was asked of a service that does
	// not advertise XEP-0413 (urn:xmpp:order-by:1), and no cache answered.
	ErrOrderByUnsupported = errors.New("the pubsub service does not support ordering (XEP-0413 urn:xmpp:order-by:1 not advertised)")
	// ErrCancelled means a GetItems handler cancelled the request.
	ErrCancelled = errors.New("items request cancelled")
	// ErrInvalidRequest marks a request refused before anything was sent.
	ErrInvalidRequest = errors.New("invalid pubsub request")
	// ErrBadReply means the service answered something we cannot read.
	ErrBadReply = errors.New("unexpected pubsub reply")
)

// Client is the pubsub client API other plugins (those declaring
// "xep0060" as a dependency) and the API service use. All methods are safe
// for concurrent use. An empty service means the profile's own PEP service
// (its bare JID).
type Client struct {
	host     *core.Host
	log      *slog.Logger
	requests *atomic.Int64 // core.CounterPubsubItemsRequests

	mu       sync.Mutex
	jids     map[string]string // profile → bare JID, learned on connection
	features map[featureKey]*Features
	rsm      map[string]bool // service → RSM support learned from replies
	notify   map[string]int  // node → WantNotify count

	// router is the plugin's notification router (set by Init; nil in a
	// Client built without the plugin).
	router *router
}

// Settled waits until every pubsub notification the profile's session
// received so far was handled: its bus events fired (EventItems…). Called
// after an answer, it orders the notifications the service sent before
// that answer before what the caller does next.
func (c *Client) Settled(ctx context.Context, profileName string) error {
	if c.router == nil {
		return nil
	}
	return c.router.settled(ctx, profileName)
}

type featureKey struct{ profile, service string }

func newClient(h *core.Host) *Client {
	return &Client{
		host: h, log: h.Log.With("plugin", ImportName), requests: h.Counters.Get(core.CounterPubsubItemsRequests),
		jids: map[string]string{}, features: map[featureKey]*Features{}, rsm: map[string]bool{}, notify: map[string]int{},
	}
}

// bare strips the resource of a JID.
// bare returns the canonical bare form of a JID (RFC 7622), the key
// under which services are stored; an address that is not a valid JID is
// only cut at its resource.
func bare(s string) string {
	if j, err := jid.Parse(s); err == nil {
		return j.Bare().String()
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// canonicalService returns the canonical form of a service address given
// by a caller (RFC 7622: the key the cache stores), refusing what is not a
// JID.
func canonicalService(s string) (string, error) {
	c, err := jid.Canonical(s)
	if err != nil {
		return "", fmt.Errorf("%w: service address: %w", ErrInvalidRequest, err)
	}
	return c, nil
}

// canonicalFrom returns the canonical form of the 'from' of a stanza (the
// server stamps it; an odd one is kept as is).
func canonicalFrom(s string) string {
	if c, err := jid.Canonical(s); err == nil {
		return c
	}
	return s
}

// session returns the connected session of profile.
func (c *Client) session(profile string) (core.XMPP, error) {
	if c.host.Sessions == nil {
		return nil, core.NotConnected(profile)
	}
	s, err := c.host.Sessions.Session(profile)
	if err != nil {
		if errors.Is(err, core.ErrNotConnected) && !c.profileExists(profile) {
			return nil, fmt.Errorf("profile %s: %w", profile, core.ErrUnknownProfile)
		}
		return nil, err
	}
	return s, nil
}

// profileExists reports whether profile is stored (true when there is no
// store to ask).
func (c *Client) profileExists(name string) bool {
	if c.host.Store == nil {
		return true
	}
	ok, err := c.host.Store.Client.Profile.Query().Where(profile.NameEQ(name)).Exist(context.Background())
	return err != nil || ok
}

// Service resolves service for profile: its canonical form (RFC 7622)
// when not empty (an invalid address is refused, wrapping jid.ErrInvalid),
// else the
// profile's bare JID (from its session, what it last connected as, or the
// stored profile, so that it works offline too).
func (c *Client) Service(ctx context.Context, profileName, service string) (string, error) {
	if service != "" {
		return canonicalService(service)
	}
	if c.host.Sessions != nil {
		if s, err := c.host.Sessions.Session(profileName); err == nil && s.JID() != "" {
			return bare(s.JID()), nil
		}
	}
	c.mu.Lock()
	j := c.jids[profileName]
	c.mu.Unlock()
	if j != "" {
		return j, nil
	}
	if c.host.Store != nil {
		p, err := c.host.Store.Client.Profile.Query().Where(profile.NameEQ(profileName)).Only(ctx)
		if err == nil {
			return bare(p.Jid), nil
		}
		return "", fmt.Errorf("profile %s: %w", profileName, core.ErrUnknownProfile)
	}
	return "", core.NotConnected(profileName)
}

// withTimeout applies DefaultTimeout to a context without deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// iq sends one pubsub IQ and returns the raw <pubsub/> of the answer (nil
// when the answer has none).
func (c *Client) iq(ctx context.Context, profileName, service, typ, payload string) (*wire.PubSub, error) {
	s, err := c.session(profileName)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := s.SendIQRaw(ctx, service, typ, payload)
	if err != nil {
		return nil, err
	}
	return pubsubPayload(res)
}

func pubsubPayload(res *stanza.IQ) (*wire.PubSub, error) {
	if res == nil || res.Payload == nil {
		return nil, nil
	}
	ps, ok := res.Payload.(*wire.PubSub)
	if !ok {
		return nil, fmt.Errorf("%w: payload %T (is wire.Register called?)", ErrBadReply, res.Payload)
	}
	return ps, nil
}

func validOrderBy(s string) bool { return s == "" || s == "creation" || s == "modification" }

// Items asks the bus first (GetItems: a cache may answer or a handler
// cancel), then the service. The request's Service is resolved first.
func (c *Client) Items(ctx context.Context, req *ItemsRequest) (*ItemsPage, error) {
	if err := checkItems(req); err != nil {
		return nil, err
	}
	svc, err := c.Service(ctx, req.Profile, req.Service)
	if err != nil {
		return nil, err
	}
	r := *req
	r.Service = svc
	out, err := triggers.Run(ctx, c.host.Bus, GetItems, &r)
	switch {
	case err != nil:
		return nil, err
	case out.Answered():
		if out.Result == nil {
			return nil, fmt.Errorf("%s answered %s with no page", out.By, GetItems.ID())
		}
		return out.Result, nil
	case out.Cancelled():
		return nil, fmt.Errorf("%w by %s", ErrCancelled, out.By)
	}
	return c.FetchItems(ctx, &r)
}

func checkItems(req *ItemsRequest) error {
	switch {
	case req.Profile == "":
		return fmt.Errorf("%w: no profile", ErrInvalidRequest)
	case req.Node == "":
		return fmt.Errorf("%w: no node", ErrInvalidRequest)
	case req.MaxItems < 0:
		return fmt.Errorf("%w: max_items %d is negative", ErrInvalidRequest, req.MaxItems)
	case !validOrderBy(req.OrderBy):
		return fmt.Errorf("%w: order_by %q is not creation or modification", ErrInvalidRequest, req.OrderBy)
	case req.RSM != nil && req.RSM.Max != nil && *req.RSM.Max < 0:
		return fmt.Errorf("%w: rsm max %d is negative", ErrInvalidRequest, *req.RSM.Max)
	case req.RSM != nil && req.RSM.Index != nil && *req.RSM.Index < 0:
		return fmt.Errorf("%w: rsm index %d is negative", ErrInvalidRequest, *req.RSM.Index)
	}
	return nil
}

// FetchItems sends an items request to the service without asking the bus
// (caches use it to sync). It counts in core.CounterPubsubItemsRequests and
// fires ItemsReceived with the answer.
func (c *Client) FetchItems(ctx context.Context, req *ItemsRequest) (*ItemsPage, error) {
	if err := checkItems(req); err != nil {
		return nil, err
	}
	svc, err := c.Service(ctx, req.Profile, req.Service)
	if err != nil {
		return nil, err
	}
	r := *req
	r.Service = svc
	if r.OrderBy != "" {
		f, err := c.Features(ctx, r.Profile, svc)
		if err != nil {
			return nil, err
		}
		if !f.Has(wire.NSOrderBy) {
			return nil, fmt.Errorf("order by %s on %s: %w", r.OrderBy, svc, ErrOrderByUnsupported)
		}
	}
	q := wire.ItemsQuery{Node: r.Node, MaxItems: r.MaxItems, IDs: r.ItemIDs, SubID: r.SubID, RSM: r.RSM, OrderBy: r.OrderBy}
	s, err := c.session(r.Profile)
	if err != nil {
		return nil, err
	}
	tctx, cancel := withTimeout(ctx)
	defer cancel()
	c.requests.Add(1)
	res, err := s.SendIQRaw(tctx, svc, "get", q.XML())
	if err != nil {
		return nil, fmt.Errorf("items of %s on %s: %w", r.Node, svc, err)
	}
	ps, err := pubsubPayload(res)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		return nil, fmt.Errorf("items of %s on %s: %w: no <pubsub/> in the answer", r.Node, svc, ErrBadReply)
	}
	reply, err := wire.ParseItems(ps.Inner)
	if err != nil {
		return nil, fmt.Errorf("items of %s on %s: %w: %v", r.Node, svc, ErrBadReply, err)
	}
	c.learnRSM(svc, r.RSM != nil, reply.RSM != nil)
	page := &ItemsPage{Items: reply.Items, RSM: reply.RSM, Complete: Complete(&r, reply)}
	if err := triggers.Notify(ctx, c.host.Bus, ItemsReceived, &ItemsResult{Request: &r, Page: page}); err != nil {
		c.log.Warn("pubsub.items.received observers", "err", err)
	}
	return page, nil
}

// SetComplete says whether a page of n items answered with this <set/> is
// the whole result: the count says so and the page starts at the
// beginning.
func SetComplete(set *wire.RSMSet, n int) bool {
	return set.Count != nil && *set.Count == n && (set.FirstIndex == nil || *set.FirstIndex <= 0 || n == 0)
}

// Complete tells whether an answer is known to hold every item the request
// matches.
func Complete(req *ItemsRequest, reply wire.ItemsReply) bool {
	n := len(reply.Items)
	if set := reply.RSM; set != nil {
		return SetComplete(set, n)
	}
	switch {
	case len(req.ItemIDs) > 0:
		return true
	case req.MaxItems > 0:
		// Fewer than asked: the node holds no more.
		return n < req.MaxItems
	default:
		// No <set/>: the service returned everything (an RSM request it
		// ignored included).
		return true
	}
}

// learnRSM records RSM support of a service from a reply: a <set/> proves
// support; an RSM request answered without one proves the opposite.
func (c *Client) learnRSM(service string, asked, got bool) {
	if !asked && !got {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rsm[service] = got
}

// RSMSupport reports what replies showed about RSM on service: known is
// false until an RSM request was answered or a reply carried a <set/>.
func (c *Client) RSMSupport(service string) (supported, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	supported, known = c.rsm[service]
	return supported, known
}

// SetRSMSupport records RSM support of service learned elsewhere (e.g.
// persisted by the cache).
func (c *Client) SetRSMSupport(service string, supported bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rsm[service] = supported
}

// PublishRequest is a publish.
type PublishRequest struct {
	Profile string
	Service string
	Node    string
	// ID is the item id; empty lets the service assign one.
	ID string
	// Payload is exactly one XML element.
	Payload []byte
	// Options are publish-options (field var → values).
	Options map[string][]string
}

// Publish publishes an item and returns the id the service assigned (or
// the requested one). With options, a precondition-not-met answer makes the
// client configure the node with those options and publish once more. The
// error is <conflict/> plus pubsub#errors <precondition-not-met/>, and the
// stanza decoder keeps only the last condition element it reads (ejabberd
// writes precondition-not-met first), so conflict counts as well: a publish
// has no other reason to conflict.
func (c *Client) Publish(ctx context.Context, req PublishRequest) (string, error) {
	if req.Node == "" {
		return "", fmt.Errorf("%w: no node", ErrInvalidRequest)
	}
	if err := wire.CheckPayload(req.Payload); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	svc, err := c.Service(ctx, req.Profile, req.Service)
	if err != nil {
		return "", err
	}
	payload := wire.Publish(req.Node, req.ID, req.Payload, req.Options)
	sent := time.Now()
	ps, err := c.iq(ctx, req.Profile, svc, "set", payload)
	if err != nil && len(req.Options) > 0 && (isCondition(err, "precondition-not-met") || isCondition(err, "conflict")) {
		c.log.Info("publish-options not met: reconfiguring the node", "profile", req.Profile, "service", svc, "node", req.Node)
		if cerr := c.ConfigureNode(ctx, NodeRequest{Profile: req.Profile, Service: svc, Node: req.Node, Options: req.Options}); cerr != nil {
			return "", fmt.Errorf("publish to %s on %s: %w; reconfiguring the node for its publish-options failed: %v", req.Node, svc, err, cerr)
		}
		ps, err = c.iq(ctx, req.Profile, svc, "set", payload)
	}
	if err != nil {
		return "", fmt.Errorf("publish to %s on %s: %w", req.Node, svc, err)
	}
	id := req.ID
	if ps != nil {
		_, got, perr := wire.ParsePublish(ps.Inner)
		if perr != nil {
			return "", fmt.Errorf("publish to %s on %s: %w: %v", req.Node, svc, ErrBadReply, perr)
		}
		if got != "" {
			id = got
		}
	}
	notifyBus(ctx, c, Published, &PublishedEvent{Profile: req.Profile, Service: svc, Node: req.Node, ID: id, Sent: sent})
	return id, nil
}

// isCondition reports whether err is an IQ error with that condition.
func isCondition(err error, cond string) bool {
	var ie *session.IQError
	return errors.As(err, &ie) && ie.Condition == cond
}

// RetractRequest is a retract.
type RetractRequest struct {
	Profile string
	Service string
	Node    string
	ID      string
	// Notify asks the service to notify subscribers.
	Notify bool
}

// Retract retracts one item.
func (c *Client) Retract(ctx context.Context, req RetractRequest) error {
	if req.Node == "" || req.ID == "" {
		return fmt.Errorf("%w: retract needs a node and an item id", ErrInvalidRequest)
	}
	svc, err := c.Service(ctx, req.Profile, req.Service)
	if err != nil {
		return err
	}
	if _, err := c.iq(ctx, req.Profile, svc, "set", wire.Retract(req.Node, req.ID, req.Notify)); err != nil {
		return fmt.Errorf("retract %s from %s on %s: %w", req.ID, req.Node, svc, err)
	}
	notifyBus(ctx, c, Retracted, &RetractedEvent{Profile: req.Profile, Service: svc, Node: req.Node, ID: req.ID})
	return nil
}
