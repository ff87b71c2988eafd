package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// AnalyserSet holds the schema definition for the AnalyserSet entity: the
// version of the set of known analysers. Nodes analysed under another
// version are re-analysed.
//
// There is one row per scope; today only the scope "global" is used.
type AnalyserSet struct {
	ent.Schema
}

// Fields of the AnalyserSet.
func (AnalyserSet) Fields() []ent.Field {
	return []ent.Field{
		field.String("scope").
			NotEmpty().
			Unique().
			Comment("What the version covers; \"global\" for the whole daemon."),
		field.Int64("version").
			Default(1).
			Comment("Bumped when the set changes (plugin installed/removed, configuration)."),
		field.String("digest").
			Default("").
			Comment("Digest of the declarations the version was computed from."),
		field.Time("changed_at").
			Default(time.Now).
			Comment("When the version last changed."),
	}
}
