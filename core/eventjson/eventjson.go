// Package eventjson gives the typed API events (backend.v2.Event) their
// JSON shape of `backend events -o json` (DESIGN §9): a type name such as
// "pubsub.items" and the event's own fields with snake_case keys. The CLI
// prints it; the deprecated backend.v1 stream sends the fields as its
// data_json. One function per kind of event, so that a new kind is added
// in one place.
package eventjson

import (
	backendv2 "example.org/backend/api/backendv2"
)

// Types of the events, as `backend events` names them.
const (
	TypeStarted        = "stream.started"
	TypeItems          = "pubsub.items"
	TypeRetract        = "pubsub.retract"
	TypePurge          = "pubsub.purge"
	TypeDelete         = "pubsub.delete"
	TypeConfiguration  = "pubsub.configuration"
	TypeSubscription   = "pubsub.subscription"
	TypeSessionState   = "session.state"
	TypeCacheSync      = "cache.sync"
	TypeParamChanged   = "param.changed"
	TypePluginState    = "plugin.state"
	TypeProfileCreated = "profile.created"
	TypeProfileDeleted = "profile.deleted"
)

// Item is an item in the JSON shape of DESIGN §9: {"id","publisher","xml"}.
type Item struct {
	ID        string  `json:"id"`
	Publisher *string `json:"publisher"`
	XML       string  `json:"xml"`
}

// Field is a data-form field: {"var","type","label","values"}.
type Field struct {
	Var    string   `json:"var"`
	Type   *string  `json:"type"`
	Label  *string  `json:"label"`
	Values []string `json:"values"`
}

// Fields returns the type of ev and its own fields (without type, profile
// and time); ok is false for a kind this package does not know (an event
// of a newer daemon), which a client skips.
func Fields(ev *backendv2.Event) (typ string, data map[string]any, ok bool) {
	switch e := ev.GetEvent().(type) {
	case *backendv2.Event_Started:
		return TypeStarted, map[string]any{}, true
	case *backendv2.Event_Items:
		m := e.Items
		items := make([]Item, 0, len(m.GetItems()))
		for _, it := range m.GetItems() {
			items = append(items, Item{ID: it.GetId(), Publisher: it.Publisher, XML: it.GetXml()})
		}
		return TypeItems, map[string]any{"service": m.GetService(), "node": m.GetNode(), "items": items, "missing": list(m.GetMissing())}, true
	case *backendv2.Event_Retract:
		m := e.Retract
		return TypeRetract, map[string]any{"service": m.GetService(), "node": m.GetNode(), "ids": list(m.GetIds())}, true
	case *backendv2.Event_Purge:
		m := e.Purge
		return TypePurge, map[string]any{"service": m.GetService(), "node": m.GetNode()}, true
	case *backendv2.Event_Delete:
		m := e.Delete
		return TypeDelete, map[string]any{"service": m.GetService(), "node": m.GetNode(), "redirect": m.Redirect}, true
	case *backendv2.Event_Configuration:
		m := e.Configuration
		fields := make([]Field, 0, len(m.GetFields()))
		for _, f := range m.GetFields() {
			fields = append(fields, FieldOf(f))
		}
		return TypeConfiguration, map[string]any{"service": m.GetService(), "node": m.GetNode(), "fields": fields}, true
	case *backendv2.Event_Subscription:
		m := e.Subscription
		return TypeSubscription, map[string]any{"service": m.GetService(), "node": m.GetNode(), "jid": m.GetJid(),
			"sub_id": m.SubId, "subscription": m.GetSubscription()}, true
	case *backendv2.Event_SessionState:
		m := e.SessionState
		return TypeSessionState, map[string]any{"state": m.GetState(), "error": m.Error, "jid": m.Jid}, true
	case *backendv2.Event_CacheSync:
		m := e.CacheSync
		d := map[string]any{"service": m.GetService(), "node": m.GetNode(), "state": m.GetState(), "items": m.GetItems(),
			"total": m.Total, "parse_pending": m.GetParsePending(), "unchanged": m.GetUnchanged()}
		if m.GetDone() {
			var errText *string
			if m.GetError() != "" {
				s := m.GetError()
				errText = &s
			}
			d["error"], d["done"], d["fresh"] = errText, true, m.GetFresh()
		}
		return TypeCacheSync, d, true
	case *backendv2.Event_ParamChanged:
		m := e.ParamChanged
		var v any
		if m.GetValue() != nil {
			v = m.GetValue().AsInterface()
		}
		return TypeParamChanged, map[string]any{"key": m.GetKey(), "value": v, "source": m.GetSource(), "needs_reconnect": m.GetNeedsReconnect()}, true
	case *backendv2.Event_PluginState:
		m := e.PluginState
		var pid *int64
		if m.GetPid() != 0 {
			p := m.GetPid()
			pid = &p
		}
		return TypePluginState, map[string]any{"name": m.GetName(), "version": m.GetVersion(), "state": m.GetState(), "pid": pid,
			"restarts": m.GetRestarts(), "first_party": m.GetFirstParty(), "last_error": m.LastError}, true
	case *backendv2.Event_ProfileCreated:
		m := e.ProfileCreated
		return TypeProfileCreated, map[string]any{"jid": m.GetJid(), "autoconnect": m.GetAutoconnect()}, true
	case *backendv2.Event_ProfileDeleted:
		return TypeProfileDeleted, map[string]any{}, true
	}
	return "", nil, false
}

// FieldOf converts a form field to its JSON shape (type and label null
// when empty, values [] when none).
func FieldOf(f *backendv2.PubSubField) Field {
	j := Field{Var: f.GetVar(), Values: list(f.GetValues())}
	if f.GetType() != "" {
		t := f.GetType()
		j.Type = &t
	}
	if f.GetLabel() != "" {
		l := f.GetLabel()
		j.Label = &l
	}
	return j
}

func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
