package xep0060

import (
	"context"

	"connectrpc.com/connect"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// apiV2 implements backendv2connect.PubSubServiceHandler over the Client.
type apiV2 struct{ c *Client }

// Bounds of one message of a streamed items answer: a message holds at most
// ChunkItems items and at most ChunkBytes of item XML (an item larger than
// that travels alone), so that encoding an answer needs memory for one
// message, not for the whole answer.
const (
	ChunkItems = 256
	ChunkBytes = 1 << 20
)

// ItemsRequestFromV2 converts an API items request.
func ItemsRequestFromV2(m *backendv2.PubSubItemsRequest) *ItemsRequest {
	r := &ItemsRequest{
		Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), MaxItems: int(m.GetMaxItems()),
		ItemIDs: m.GetItemIds(), SubID: m.GetSubId(), OrderBy: m.GetOrderBy(), NoCache: m.GetNoCache(),
	}
	if m.RsmMax != nil || m.RsmAfter != nil || m.RsmBefore != nil || m.RsmIndex != nil {
		q := &wire.RSMQuery{After: m.RsmAfter, Before: m.RsmBefore}
		if m.RsmMax != nil {
			v := int(*m.RsmMax)
			q.Max = &v
		}
		if m.RsmIndex != nil {
			v := int(*m.RsmIndex)
			q.Index = &v
		}
		r.RSM = q
	}
	return r
}

// ItemV2 converts an item for the API: its canonical wrapper as text.
func ItemV2(it wire.Item) *backendv2.PubSubItem {
	pi := &backendv2.PubSubItem{Id: it.ID, Xml: wire.Wrap(it)}
	if it.Publisher != "" {
		pub := it.Publisher
		pi.Publisher = &pub
	}
	return pi
}

// HeaderV2 is the header of a page's streamed answer.
func HeaderV2(p *ItemsPage) *backendv2.PubSubItemsHeader {
	h := &backendv2.PubSubItemsHeader{Complete: p.Complete, FromCache: p.FromCache, Stale: p.Stale, Items: int64(len(p.Items))}
	if p.RSM != nil {
		r := &backendv2.PubSubRSM{First: p.RSM.First, Last: p.RSM.Last}
		if p.RSM.Count != nil {
			v := int64(*p.RSM.Count)
			r.Count = &v
		}
		if p.RSM.FirstIndex != nil {
			v := int64(*p.RSM.FirstIndex)
			r.Index = &v
		}
		h.Rsm = r
	}
	return h
}

// SendPage streams p: the header in the first message, then the items in
// batches bounded by ChunkItems and ChunkBytes. Each item's XML is built
// when its batch is, and dropped once sent.
func SendPage(p *ItemsPage, send func(*backendv2.PubSubItemsChunk) error) error {
	msg := &backendv2.PubSubItemsChunk{Header: HeaderV2(p)}
	size := 0
	for _, it := range p.Items {
		n := len(it.Payload) + len(it.ID) + len(it.Publisher) + 40
		if len(msg.Items) > 0 && (len(msg.Items) >= ChunkItems || size+n > ChunkBytes) {
			if err := send(msg); err != nil {
				return err
			}
			msg, size = &backendv2.PubSubItemsChunk{}, 0
		}
		msg.Items = append(msg.Items, ItemV2(it))
		size += n
	}
	return send(msg)
}

func optionsV2(os []*backendv2.PubSubOption) map[string][]string {
	if len(os) == 0 {
		return nil
	}
	m := map[string][]string{}
	for _, o := range os {
		m[o.GetVar()] = append(m[o.GetVar()], o.GetValue())
	}
	return m
}

func (a *apiV2) Items(ctx context.Context, req *connect.Request[backendv2.PubSubItemsRequest], stream *connect.ServerStream[backendv2.PubSubItemsChunk]) error {
	page, err := a.c.Items(ctx, ItemsRequestFromV2(req.Msg))
	if err != nil {
		return APIError(err)
	}
	return SendPage(page, stream.Send)
}

func (a *apiV2) Publish(ctx context.Context, req *connect.Request[backendv2.PubSubPublishRequest]) (*connect.Response[backendv2.PubSubPublishResponse], error) {
	m := req.Msg
	id, err := a.c.Publish(ctx, PublishRequest{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), ID: m.GetId(),
		Payload: []byte(m.GetPayload()), Options: optionsV2(m.GetOptions())})
	if err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubPublishResponse{Id: id}), nil
}

func (a *apiV2) Retract(ctx context.Context, req *connect.Request[backendv2.PubSubRetractRequest]) (*connect.Response[backendv2.PubSubOkResponse], error) {
	m := req.Msg
	if err := a.c.Retract(ctx, RetractRequest{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), ID: m.GetId(), Notify: m.GetNotify()}); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubOkResponse{}), nil
}

func subToV2(s wire.Subscription) *backendv2.PubSubSubscription {
	return &backendv2.PubSubSubscription{Node: s.Node, Jid: s.JID, SubId: s.SubID, Subscription: s.Subscription}
}

func (a *apiV2) Subscribe(ctx context.Context, req *connect.Request[backendv2.PubSubSubscribeRequest]) (*connect.Response[backendv2.PubSubSubscription], error) {
	m := req.Msg
	sub, err := a.c.Subscribe(ctx, m.GetProfile(), m.GetService(), m.GetNode())
	if err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(subToV2(sub)), nil
}

func (a *apiV2) Unsubscribe(ctx context.Context, req *connect.Request[backendv2.PubSubSubscribeRequest]) (*connect.Response[backendv2.PubSubOkResponse], error) {
	m := req.Msg
	if err := a.c.Unsubscribe(ctx, m.GetProfile(), m.GetService(), m.GetNode(), m.GetSubId()); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubOkResponse{}), nil
}

func (a *apiV2) Subscriptions(ctx context.Context, req *connect.Request[backendv2.PubSubSubscriptionsRequest]) (*connect.Response[backendv2.PubSubSubscriptionsResponse], error) {
	m := req.Msg
	subs, err := a.c.Subscriptions(ctx, m.GetProfile(), m.GetService(), m.GetNode())
	if err != nil {
		return nil, APIError(err)
	}
	out := &backendv2.PubSubSubscriptionsResponse{Subscriptions: make([]*backendv2.PubSubSubscription, 0, len(subs))}
	for _, s := range subs {
		out.Subscriptions = append(out.Subscriptions, subToV2(s))
	}
	return connect.NewResponse(out), nil
}

func nodeReqV2(m *backendv2.PubSubNodeRequest) NodeRequest {
	return NodeRequest{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), Options: optionsV2(m.GetOptions())}
}

func (a *apiV2) CreateNode(ctx context.Context, req *connect.Request[backendv2.PubSubNodeRequest]) (*connect.Response[backendv2.PubSubOkResponse], error) {
	if err := a.c.CreateNode(ctx, nodeReqV2(req.Msg)); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubOkResponse{}), nil
}

func (a *apiV2) DeleteNode(ctx context.Context, req *connect.Request[backendv2.PubSubNodeRequest]) (*connect.Response[backendv2.PubSubOkResponse], error) {
	if err := a.c.DeleteNode(ctx, nodeReqV2(req.Msg)); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubOkResponse{}), nil
}

func (a *apiV2) PurgeNode(ctx context.Context, req *connect.Request[backendv2.PubSubNodeRequest]) (*connect.Response[backendv2.PubSubOkResponse], error) {
	if err := a.c.PurgeNode(ctx, nodeReqV2(req.Msg)); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubOkResponse{}), nil
}

func (a *apiV2) ConfigureNode(ctx context.Context, req *connect.Request[backendv2.PubSubNodeRequest]) (*connect.Response[backendv2.PubSubNodeConfig], error) {
	nr := nodeReqV2(req.Msg)
	if len(nr.Options) > 0 {
		if err := a.c.ConfigureNode(ctx, nr); err != nil {
			return nil, APIError(err)
		}
		return connect.NewResponse(&backendv2.PubSubNodeConfig{}), nil
	}
	fields, err := a.c.NodeConfig(ctx, nr)
	if err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv2.PubSubNodeConfig{Fields: fieldsV2(fields)}), nil
}

func fieldsV2(fs []wire.Field) []*backendv2.PubSubField {
	out := make([]*backendv2.PubSubField, 0, len(fs))
	for _, f := range fs {
		out = append(out, &backendv2.PubSubField{Var: f.Var, Type: f.Type, Label: f.Label, Values: f.Values})
	}
	return out
}

// eventBindings bridge the plugin's notification events to the API's
// event stream, one encoder per kind (see core.Bridge).
func eventBindings(events *core.Events) []triggers.Binding {
	return []triggers.Binding{
		core.Bridge(events, EventItems, encodeItems),
		core.Bridge(events, EventPurge, func(e *NodeEvent) []*backendv2.Event {
			return []*backendv2.Event{{Profile: e.Profile, Event: &backendv2.Event_Purge{Purge: &backendv2.PubSubPurgeEvent{Service: e.Service, Node: e.Node}}}}
		}),
		core.Bridge(events, EventDelete, func(e *NodeEvent) []*backendv2.Event {
			m := &backendv2.PubSubDeleteEvent{Service: e.Service, Node: e.Node}
			if e.Redirect != "" {
				r := e.Redirect
				m.Redirect = &r
			}
			return []*backendv2.Event{{Profile: e.Profile, Event: &backendv2.Event_Delete{Delete: m}}}
		}),
		core.Bridge(events, EventConfiguration, func(e *ConfigurationEvent) []*backendv2.Event {
			m := &backendv2.PubSubConfigurationEvent{Service: e.Service, Node: e.Node, Fields: fieldsV2(e.Fields)}
			return []*backendv2.Event{{Profile: e.Profile, Event: &backendv2.Event_Configuration{Configuration: m}}}
		}),
		core.Bridge(events, EventSubscription, func(e *SubscriptionEvent) []*backendv2.Event {
			s := e.Subscription
			m := &backendv2.PubSubSubscriptionEvent{Service: e.Service, Node: s.Node, Jid: s.JID, Subscription: s.Subscription}
			if s.SubID != "" {
				id := s.SubID
				m.SubId = &id
			}
			return []*backendv2.Event{{Profile: e.Profile, Event: &backendv2.Event_Subscription{Subscription: m}}}
		}),
	}
}

// encodeItems turns an items notification into an items event (when items
// were published) and a retract event (when some were retracted).
func encodeItems(e *ItemsEvent) []*backendv2.Event {
	var out []*backendv2.Event
	if len(e.Items) > 0 {
		m := &backendv2.PubSubItemsEvent{Service: e.Service, Node: e.Node, Items: make([]*backendv2.PubSubItem, 0, len(e.Items)), Missing: e.Missing}
		for _, it := range e.Items {
			m.Items = append(m.Items, ItemV2(it))
		}
		out = append(out, &backendv2.Event{Profile: e.Profile, Event: &backendv2.Event_Items{Items: m}})
	}
	if len(e.Retracted) > 0 {
		out = append(out, &backendv2.Event{Profile: e.Profile, Event: &backendv2.Event_Retract{Retract: &backendv2.PubSubRetractEvent{Service: e.Service, Node: e.Node, Ids: e.Retracted}}})
	}
	return out
}
