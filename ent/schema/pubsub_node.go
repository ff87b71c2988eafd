package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// PubsubNode holds the schema definition for the PubsubNode entity: one
// pubsub node (service, node) as seen by one profile, with its analysis and
// cache synchronisation state.
type PubsubNode struct {
	ent.Schema
}

// Mixin of the PubsubNode.
func (PubsubNode) Mixin() []ent.Mixin {
	return []ent.Mixin{TimeMixin{}}
}

// Fields of the PubsubNode.
func (PubsubNode) Fields() []ent.Field {
	return []ent.Field{
		field.Int("profile_id").
			Comment("Profile the node is cached for (the cache is keyed by profile)."),
		field.String("service").
			Comment("JID of the pubsub service (the profile's bare JID for PEP)."),
		field.String("name").
			Comment("Node name."),
		// Analysis: which analyser matched, under which analyser-set version.
		// NULL analyser = analysed, nothing matched; NULL version = never analysed.
		field.String("analyser").
			Optional().
			Nillable().
			Comment("Name of the analyser that matched, NULL when none did."),
		field.Int64("analyser_version").
			Optional().
			Nillable().
			Comment("Analyser-set version the node was analysed under; NULL = not analysed yet."),
		field.String("type").
			Optional().
			Nillable().
			Comment("Node type given by the analyser (e.g. blog)."),
		field.String("subtype").
			Optional().
			Nillable().
			Comment("Node subtype given by the analyser (e.g. comment)."),
		// Synchronisation state machine of the cache:
		//   never       nothing cached and no sync decided yet;
		//   no_sync     analysed, the analyser says not to sync (no re-analysis on each get);
		//   in_progress a sync is running (after a restart it is resumed or reset);
		//   complete    every item of the node is cached;
		//   partial     some items are cached but not all (purged, interrupted,
		//               or the service cannot return the whole node);
		//   error       the last sync failed; retried at next_attempt_at.
		field.Enum("sync_state").
			Values("never", "no_sync", "in_progress", "complete", "partial", "error").
			Default("never"),
		field.Time("sync_state_changed_at").
			Default(time.Now).
			Comment("When sync_state last changed."),
		field.Time("synced_at").
			Optional().
			Nillable().
			Comment("When the last full sync completed."),
		field.Text("last_error").
			Optional().
			Nillable().
			Comment("Error of the last failed sync attempt."),
		field.Int("attempts").
			Default(0).
			NonNegative().
			Comment("Failed sync attempts since the last success (drives the back-off)."),
		field.Time("next_attempt_at").
			Optional().
			Nillable().
			Comment("When the next sync attempt is due after an error."),
		field.Bool("fresh").
			Default(false).
			Comment("Complete and kept up to date by notifications since the last sync or reconciliation."),
		field.Bool("subscribed").
			Default(false).
			Comment("The profile is subscribed to the node (notifications flow)."),
		// Limits announced by the service (node configuration / disco), NULL when unknown.
		field.Int("max_items").
			Optional().
			Nillable().
			Comment("pubsub#max_items announced by the service; -1 means \"max\" (service limit); NULL = unknown."),
		field.JSON("limits", map[string]any{}).
			Optional().
			Comment("Other limits and configuration announced by the service (raw values)."),
		field.JSON("extra", map[string]any{}).
			Optional().
			Comment("Free-form data for plugins."),
	}
}

// Edges of the PubsubNode.
func (PubsubNode) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("profile", Profile.Type).
			Ref("pubsub_nodes").
			Field("profile_id").
			Unique().
			Required(),
		// Deleting a node deletes its items.
		edge.To("items", PubsubItem.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the PubsubNode.
func (PubsubNode) Indexes() []ent.Index {
	return []ent.Index{
		// One row per node per profile (the ancestor's sync was keyed without the profile).
		index.Fields("profile_id", "service", "name").Unique(),
		// Search and purge filter nodes by type/subtype.
		index.Fields("type", "subtype"),
		// Retry scheduling scans error nodes by due time.
		index.Fields("sync_state", "next_attempt_at"),
	}
}
