package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Analyser holds the schema definition for the Analyser entity: a persisted
// analyser declaration (built-in or made by an external plugin), so that the
// set of known analysers survives plugin crashes and restarts.
type Analyser struct {
	ent.Schema
}

// Fields of the Analyser.
func (Analyser) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").
			NotEmpty().
			Unique().
			Comment("Normalised analyser name (lower case), unique."),
		field.String("plugin").
			NotEmpty().
			Comment("Plugin that declared the analyser (its owner)."),
		field.String("type").
			NotEmpty().
			Comment("Node type given to matching nodes."),
		field.String("subtype").
			Optional().
			Nillable(),
		field.String("node_prefix").
			Optional().
			Nillable().
			Comment("Node-name prefix to match."),
		field.String("namespace").
			Optional().
			Nillable().
			Comment("Namespace of the item payload to match."),
		field.Bool("to_sync").
			Default(false).
			Comment("Nodes matching this analyser are cached whole."),
		field.String("parser").
			Optional().
			Nillable().
			Comment("Name of the parser applied to items, NULL for none."),
		field.Int("priority").
			Default(0).
			Comment("Analysers are tried by priority, then name."),
		field.JSON("indexed_paths", []string{}).
			Optional().
			Comment("JSON paths of parsed data worth indexing/searching."),
		field.Time("declared_at").
			Default(time.Now).
			UpdateDefault(time.Now).
			Comment("When the declaration was last made or changed."),
	}
}
