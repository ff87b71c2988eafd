package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// ServiceProfile holds the schema definition for the ServiceProfile entity:
// how one pubsub service behaves where the protocol leaves room, learned by
// observation and mirrored by the cache.
type ServiceProfile struct {
	ent.Schema
}

// Fields of the ServiceProfile.
func (ServiceProfile) Fields() []ent.Field {
	return []ent.Field{
		field.Int("profile_id").
			Comment("Profile that observed the service."),
		field.String("service").
			Comment("JID of the pubsub service."),
		field.Enum("rsm").
			Values("unknown", "yes", "no").
			Default("unknown").
			Comment("Whether the service honours RSM on items (seen from a <set/> in answers)."),
		field.Enum("ids_order").
			Values("unknown", "request", "creation").
			Default("unknown").
			Comment("Order of items requested by id: request order (Prosody) or creation order (ejabberd)."),
		field.Enum("republish_moves").
			Values("unknown", "yes", "no").
			Default("unknown").
			Comment("Whether a re-published item becomes the newest (Prosody) or keeps its place (ejabberd)."),
		field.Enum("max_items_rsm").
			Values("unknown", "yes", "no").
			Default("unknown").
			Comment("Whether max_items requests are answered with an RSM <set/>."),
		field.Enum("cursor_kind").
			Values("unknown", "item_id", "opaque").
			Default("unknown").
			Comment("What RSM first/last cursors are: item ids or opaque service values."),
		field.JSON("extra", map[string]any{}).
			Optional().
			Comment("Other observations."),
		field.Time("learned_at").
			Default(time.Now).
			UpdateDefault(time.Now).
			Comment("When the profile was last updated from observation."),
	}
}

// Edges of the ServiceProfile.
func (ServiceProfile) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("profile", Profile.Type).
			Ref("service_profiles").
			Field("profile_id").
			Unique().
			Required(),
	}
}

// Indexes of the ServiceProfile.
func (ServiceProfile) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("profile_id", "service").Unique(),
	}
}
