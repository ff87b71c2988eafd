package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Profile holds the schema definition for the Profile entity: one XMPP
// account the daemon acts for.
type Profile struct {
	ent.Schema
}

// Mixin of the Profile.
func (Profile) Mixin() []ent.Mixin {
	return []ent.Mixin{TimeMixin{}}
}

// Fields of the Profile.
func (Profile) Fields() []ent.Field {
	return []ent.Field{
		// The name is how users and plugins designate a profile: unique.
		field.String("name").
			NotEmpty().
			Unique().
			Comment("Profile name, unique."),
		field.String("jid").
			Default("").
			Comment("Bare JID of the account (may be empty until configured)."),
		field.Bool("autoconnect").
			Default(false).
			Comment("Connect the profile when the daemon starts."),
	}
}

// Edges of the Profile. Deleting a profile deletes everything it owns: the
// cascade is annotated on the edge.To side, where Ent honours it.
func (Profile) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("params", Param.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("pubsub_nodes", PubsubNode.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("service_profiles", ServiceProfile.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}
