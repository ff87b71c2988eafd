package xep0060

import (
	"context"
	"errors"
	"regexp"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/core"
	"example.org/backend/core/session"
	"example.org/backend/plugins/xep0060/wire"
)

// api implements backendv1connect.PubSubServiceHandler over the Client.
type api struct{ c *Client }

// ItemsRequestFromProto converts an API items request.
func ItemsRequestFromProto(m *backendv1.PubSubItemsRequest) *ItemsRequest {
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

// PageToProto converts an items page for the API.
func PageToProto(p *ItemsPage) *backendv1.PubSubItemsPage {
	out := &backendv1.PubSubItemsPage{Complete: p.Complete, FromCache: p.FromCache, Stale: p.Stale,
		Items: make([]*backendv1.PubSubItem, 0, len(p.Items))}
	for _, it := range p.Items {
		pi := &backendv1.PubSubItem{Id: it.ID, Xml: wire.Wrap(it)}
		if it.Publisher != "" {
			pub := it.Publisher
			pi.Publisher = &pub
		}
		out.Items = append(out.Items, pi)
	}
	if p.RSM != nil {
		r := &backendv1.PubSubRSM{First: p.RSM.First, Last: p.RSM.Last}
		if p.RSM.Count != nil {
			v := int64(*p.RSM.Count)
			r.Count = &v
		}
		if p.RSM.FirstIndex != nil {
			v := int64(*p.RSM.FirstIndex)
			r.Index = &v
		}
		out.Rsm = r
	}
	return out
}

func options(os []*backendv1.PubSubOption) map[string][]string {
	if len(os) == 0 {
		return nil
	}
	m := map[string][]string{}
	for _, o := range os {
		m[o.GetVar()] = append(m[o.GetVar()], o.GetValue())
	}
	return m
}

func (a *api) Items(ctx context.Context, req *connect.Request[backendv1.PubSubItemsRequest]) (*connect.Response[backendv1.PubSubItemsPage], error) {
	page, err := a.c.Items(ctx, ItemsRequestFromProto(req.Msg))
	if err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(PageToProto(page)), nil
}

func (a *api) Publish(ctx context.Context, req *connect.Request[backendv1.PubSubPublishRequest]) (*connect.Response[backendv1.PubSubPublishResponse], error) {
	m := req.Msg
	id, err := a.c.Publish(ctx, PublishRequest{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), ID: m.GetId(),
		Payload: m.GetPayload(), Options: options(m.GetOptions())})
	if err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv1.PubSubPublishResponse{Id: id}), nil
}

func (a *api) Retract(ctx context.Context, req *connect.Request[backendv1.PubSubRetractRequest]) (*connect.Response[backendv1.PubSubOkResponse], error) {
	m := req.Msg
	if err := a.c.Retract(ctx, RetractRequest{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), ID: m.GetId(), Notify: m.GetNotify()}); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv1.PubSubOkResponse{}), nil
}

func subToProto(s wire.Subscription) *backendv1.PubSubSubscription {
	return &backendv1.PubSubSubscription{Node: s.Node, Jid: s.JID, SubId: s.SubID, Subscription: s.Subscription}
}

func (a *api) Subscribe(ctx context.Context, req *connect.Request[backendv1.PubSubSubscribeRequest]) (*connect.Response[backendv1.PubSubSubscription], error) {
	m := req.Msg
	sub, err := a.c.Subscribe(ctx, m.GetProfile(), m.GetService(), m.GetNode())
	if err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(subToProto(sub)), nil
}

func (a *api) Unsubscribe(ctx context.Context, req *connect.Request[backendv1.PubSubSubscribeRequest]) (*connect.Response[backendv1.PubSubOkResponse], error) {
	m := req.Msg
	if err := a.c.Unsubscribe(ctx, m.GetProfile(), m.GetService(), m.GetNode(), m.GetSubId()); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv1.PubSubOkResponse{}), nil
}

func (a *api) Subscriptions(ctx context.Context, req *connect.Request[backendv1.PubSubSubscriptionsRequest]) (*connect.Response[backendv1.PubSubSubscriptionsResponse], error) {
	m := req.Msg
	subs, err := a.c.Subscriptions(ctx, m.GetProfile(), m.GetService(), m.GetNode())
	if err != nil {
		return nil, APIError(err)
	}
	out := &backendv1.PubSubSubscriptionsResponse{Subscriptions: make([]*backendv1.PubSubSubscription, 0, len(subs))}
	for _, s := range subs {
		out.Subscriptions = append(out.Subscriptions, subToProto(s))
	}
	return connect.NewResponse(out), nil
}

func nodeReq(m *backendv1.PubSubNodeRequest) NodeRequest {
	return NodeRequest{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), Options: options(m.GetOptions())}
}

func (a *api) CreateNode(ctx context.Context, req *connect.Request[backendv1.PubSubNodeRequest]) (*connect.Response[backendv1.PubSubOkResponse], error) {
	if err := a.c.CreateNode(ctx, nodeReq(req.Msg)); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv1.PubSubOkResponse{}), nil
}

func (a *api) DeleteNode(ctx context.Context, req *connect.Request[backendv1.PubSubNodeRequest]) (*connect.Response[backendv1.PubSubOkResponse], error) {
	if err := a.c.DeleteNode(ctx, nodeReq(req.Msg)); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv1.PubSubOkResponse{}), nil
}

func (a *api) PurgeNode(ctx context.Context, req *connect.Request[backendv1.PubSubNodeRequest]) (*connect.Response[backendv1.PubSubOkResponse], error) {
	if err := a.c.PurgeNode(ctx, nodeReq(req.Msg)); err != nil {
		return nil, APIError(err)
	}
	return connect.NewResponse(&backendv1.PubSubOkResponse{}), nil
}

func (a *api) ConfigureNode(ctx context.Context, req *connect.Request[backendv1.PubSubNodeRequest]) (*connect.Response[backendv1.PubSubNodeConfig], error) {
	nr := nodeReq(req.Msg)
	if len(nr.Options) > 0 {
		if err := a.c.ConfigureNode(ctx, nr); err != nil {
			return nil, APIError(err)
		}
		return connect.NewResponse(&backendv1.PubSubNodeConfig{}), nil
	}
	fields, err := a.c.NodeConfig(ctx, nr)
	if err != nil {
		return nil, APIError(err)
	}
	out := &backendv1.PubSubNodeConfig{Fields: make([]*backendv1.PubSubField, 0, len(fields))}
	for _, f := range fields {
		out.Fields = append(out.Fields, &backendv1.PubSubField{Var: f.Var, Type: f.Type, Label: f.Label, Values: f.Values})
	}
	return connect.NewResponse(out), nil
}

// profileInMessage finds NAME in an error text "profile NAME: …".
var profileInMessage = regexp.MustCompile(`(?:^|: )profile ([A-Za-z0-9][A-Za-z0-9_.-]{0,63}): `)

// notConnectedProfile names the profile of a not-connected error: its
// NotConnectedError, else the "profile NAME: " of its text, else PROFILE.
func notConnectedProfile(err error) string {
	var nc *core.NotConnectedError
	if errors.As(err, &nc) {
		return nc.Profile
	}
	if m := profileInMessage.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return "PROFILE"
}

// APIError maps client errors to API codes: NotFound (unknown profile,
// item-not-found), FailedPrecondition (profile not connected, order-by not
// supported, precondition-not-met), PermissionDenied, AlreadyExists
// (conflict), InvalidArgument, Unimplemented, DeadlineExceeded, Aborted
// (cancelled by a trigger handler); anything else is Unavailable.
func APIError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeUnavailable
	var ie *session.IQError
	switch {
	case errors.Is(err, core.ErrUnknownProfile):
		code = connect.CodeNotFound
		err = errors.New(err.Error() + " (see `backend profile list`)")
	case errors.Is(err, core.ErrNotConnected):
		code = connect.CodeFailedPrecondition
		err = errors.New(err.Error() + " (connect it with `backend profile connect " + notConnectedProfile(err) + "`)")
	case errors.Is(err, ErrOrderByUnsupported):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, ErrInvalidRequest):
		code = connect.CodeInvalidArgument
	case errors.Is(err, ErrCancelled):
		code = connect.CodeAborted
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case errors.As(err, &ie):
		switch ie.Condition {
		case "item-not-found", "recipient-unavailable", "remote-server-not-found":
			code = connect.CodeNotFound
		case "forbidden", "not-authorized", "registration-required", "presence-subscription-required", "closed-node":
			code = connect.CodePermissionDenied
		case "conflict":
			code = connect.CodeAlreadyExists
		case "bad-request", "not-acceptable", "jid-malformed", "invalid-payload", "payload-too-big", "item-forbidden",
			"invalid-options", "nodeid-required", "item-required", "payload-required", "invalid-jid", "invalid-subid", "subid-required":
			code = connect.CodeInvalidArgument
		case "feature-not-implemented", "service-unavailable", "unsupported":
			code = connect.CodeUnimplemented
		case "precondition-not-met", "not-allowed":
			code = connect.CodeFailedPrecondition
		case "resource-constraint", "policy-violation":
			code = connect.CodeResourceExhausted
		}
	}
	return connect.NewError(code, err)
}
