package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Param holds the schema definition for the Param entity: one per-profile
// parameter (category, name) with a clear value and/or an encrypted secret.
type Param struct {
	ent.Schema
}

// Fields of the Param.
func (Param) Fields() []ent.Field {
	return []ent.Field{
		field.Int("profile_id").
			Comment("Owning profile."),
		field.String("category").
			NotEmpty(),
		field.String("name").
			NotEmpty(),
		field.Text("value").
			Default("").
			Comment("Clear-text value; empty for secrets."),
		// Secrets are stored encrypted by core (never in clear, never logged);
		// NULL when the parameter is not a secret.
		field.Bytes("secret").
			Optional().
			Nillable().
			Sensitive().
			Comment("Encrypted secret value (nonce + ciphertext), NULL when not a secret."),
		field.Time("updated_at").
			Default(time.Now).
			UpdateDefault(time.Now),
	}
}

// Edges of the Param.
func (Param) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("profile", Profile.Type).
			Ref("params").
			Field("profile_id").
			Unique().
			Required(),
	}
}

// Indexes of the Param.
func (Param) Indexes() []ent.Index {
	return []ent.Index{
		// A parameter exists once per profile: upserts conflict on this key.
		index.Fields("profile_id", "category", "name").Unique(),
	}
}
