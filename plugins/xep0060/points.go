package xep0060

import (
	"encoding/json"
	"time"

	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// ItemsRequest is an items request of a profile. Service is resolved to the
// profile's bare JID before the GetItems point runs when the request names
// no service (the own PEP service).
type ItemsRequest struct {
	Profile string
	Service string
	Node    string
	// MaxItems > 0 sends max_items.
	MaxItems int
	// ItemIDs asks for these items only.
	ItemIDs []string
	SubID   string
	// RSM is the XEP-0059 part (nil: none).
	RSM *wire.RSMQuery
	// OrderBy is "creation" or "modification" (XEP-0413), "" for the
	// service's order.
	OrderBy string
	// NoCache asks to bypass caches (`--no-cache`, use_cache=false): a cache
	// handler on GetItems must let such a request go to the network.
	NoCache bool
}

// HasRSM reports whether the request carries an RSM part.
func (r *ItemsRequest) HasRSM() bool { return r.RSM != nil }

// ItemsPage is the answer to an items request (DESIGN §9).
type ItemsPage struct {
	Items []wire.Item
	// RSM is the reply's <set/>, nil when the service sent none.
	RSM *wire.RSMSet
	// Complete is true when the answer is known to hold every item the
	// request matches.
	Complete  bool
	FromCache bool
	// Stale is true when a cache answered with data that may be out of date.
	Stale bool
}

// ItemJSON is the JSON shape of one item: {"id","publisher","xml"}.
type ItemJSON struct {
	ID        string  `json:"id"`
	Publisher *string `json:"publisher"`
	XML       string  `json:"xml"`
}

// RSMJSON is the JSON shape of a reply's <set/>.
type RSMJSON struct {
	Count *int    `json:"count"`
	Index *int    `json:"index"`
	First *string `json:"first"`
	Last  *string `json:"last"`
}

// PageJSON is the JSON shape of an items answer (DESIGN §9).
type PageJSON struct {
	Items     []ItemJSON `json:"items"`
	RSM       *RSMJSON   `json:"rsm"`
	Complete  bool       `json:"complete"`
	FromCache bool       `json:"from_cache"`
	Stale     bool       `json:"stale"`
}

// ItemsJSON converts items to their JSON shape (canonical wrappers).
func ItemsJSON(items []wire.Item) []ItemJSON {
	out := make([]ItemJSON, 0, len(items))
	for _, it := range items {
		j := ItemJSON{ID: it.ID, XML: wire.Wrap(it)}
		if it.Publisher != "" {
			p := it.Publisher
			j.Publisher = &p
		}
		out = append(out, j)
	}
	return out
}

// JSON returns the page in its DESIGN §9 shape.
func (p *ItemsPage) JSON() PageJSON {
	out := PageJSON{Items: ItemsJSON(p.Items), Complete: p.Complete, FromCache: p.FromCache, Stale: p.Stale}
	if p.RSM != nil {
		out.RSM = &RSMJSON{Count: p.RSM.Count, Index: p.RSM.FirstIndex}
		if p.RSM.First != "" {
			f := p.RSM.First
			out.RSM.First = &f
		}
		if p.RSM.Last != "" {
			l := p.RSM.Last
			out.RSM.Last = &l
		}
	}
	return out
}

// MarshalJSON writes the DESIGN §9 shape.
func (p *ItemsPage) MarshalJSON() ([]byte, error) { return json.Marshal(p.JSON()) }

// ItemsEvent is an items notification (published and retracted items of
// one node, in the order of the <event/>), or items received in an answer.
type ItemsEvent struct {
	Profile string
	Service string
	Node    string
	// Items carry their full payloads: header-only notifications were
	// completed by fetching the items by id (an item that could not be
	// fetched is left out and listed in Missing).
	Items []wire.Item
	// Retracted are the ids of retracted items.
	Retracted []string
	// Missing are ids of header-only items that could not be fetched.
	Missing []string
}

// NodeEvent is a purge or delete notification.
type NodeEvent struct {
	Profile string
	Service string
	Node    string
	// Redirect is the <redirect uri/> of a delete, if any.
	Redirect string
}

// ConfigurationEvent is a configuration notification.
type ConfigurationEvent struct {
	Profile string
	Service string
	Node    string
	// Fields is the new configuration when the service included it.
	Fields []wire.Field
}

// SubscriptionEvent is a subscription state notification.
type SubscriptionEvent struct {
	Profile      string
	Service      string
	Subscription wire.Subscription
}

// ItemsResult is an items answer received from a service.
type ItemsResult struct {
	Request *ItemsRequest
	Page    *ItemsPage
}

// PublishedEvent follows a successful publish.
type PublishedEvent struct {
	Profile string
	Service string
	Node    string
	// ID is the id the service assigned (or the requested one).
	ID string
	// Sent is when the publish request was sent: a notification of the
	// item received since then carries the server's copy of this publish.
	Sent time.Time
}

// RetractedEvent follows a successful retract.
type RetractedEvent struct {
	Profile string
	Service string
	Node    string
	ID      string
}

// NodeChangedEvent follows a successful node operation requested by the
// profile: Op is "create", "delete", "purge", "configure" or
// "unsubscribe" (the profile's subscription to the node ended).
type NodeChangedEvent struct {
	Profile string
	Service string
	Node    string
	Op      string
	// Options are the submitted configuration fields (create, configure).
	Options map[string][]string
}

// Trigger points and events of the plugin.
var (
	// GetItems runs before an items request is sent: a handler may Answer
	// (the cache does) or Cancel it. Request.NoCache says the caller wants
	// the network.
	GetItems = triggers.NewPoint[*ItemsRequest, *ItemsPage]("pubsub.items.get",
		"Before an items request goes to the service; Answer with a page to skip the network (cache), Cancel to refuse. Honour Request.NoCache.")
	// ItemsReceived fires after an items answer came from a service.
	ItemsReceived = triggers.NewEvent[*ItemsResult]("pubsub.items.received",
		"An items answer came from a service (request and page, exact payloads).")
	// EventItems fires for each items notification (published and retracted
	// items), after header-only items were fetched by id.
	EventItems = triggers.NewEvent[*ItemsEvent]("pubsub.event.items",
		"An items notification: published items (full payloads) and retracted ids of one node.")
	// EventPurge fires for each purge notification.
	EventPurge = triggers.NewEvent[*NodeEvent]("pubsub.event.purge", "A node was purged (notification).")
	// EventDelete fires for each delete notification.
	EventDelete = triggers.NewEvent[*NodeEvent]("pubsub.event.delete", "A node was deleted (notification).")
	// EventConfiguration fires for each configuration notification.
	EventConfiguration = triggers.NewEvent[*ConfigurationEvent]("pubsub.event.configuration",
		"A node's configuration changed (notification).")
	// EventSubscription fires for each subscription notification.
	EventSubscription = triggers.NewEvent[*SubscriptionEvent]("pubsub.event.subscription",
		"A subscription's state changed (notification).")
	// Published fires after a successful publish, with the service's id.
	Published = triggers.NewEvent[*PublishedEvent]("pubsub.published",
		"The profile published an item (id assigned by the service); the payload is the server's, from the notification or a fetch.")
	// Retracted fires after a successful retract.
	Retracted = triggers.NewEvent[*RetractedEvent]("pubsub.retracted", "The profile retracted an item.")
	// NodeChanged fires after a successful create, delete, purge,
	// configure or unsubscribe requested by the profile.
	NodeChanged = triggers.NewEvent[*NodeChangedEvent]("pubsub.node.changed",
		"The profile created, deleted, purged or configured a node, or unsubscribed from it.")
)
