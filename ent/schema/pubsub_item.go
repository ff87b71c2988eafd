package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// PubsubItem holds the schema definition for the PubsubItem entity: one
// cached item of a pubsub node, raw and parsed.
//
// Full-text search is not modelled here: the migrations add, per dialect, an
// FTS5 table (SQLite) or a tsvector side table (PostgreSQL) over search_text,
// kept in sync by triggers.
type PubsubItem struct {
	ent.Schema
}

// Mixin of the PubsubItem.
func (PubsubItem) Mixin() []ent.Mixin {
	return []ent.Mixin{TimeMixin{}}
}

// Fields of the PubsubItem.
func (PubsubItem) Fields() []ent.Field {
	return []ent.Field{
		field.Int("node_id").
			Comment("Owning node."),
		field.String("item_id").
			Comment("Item id given by the service."),
		field.String("publisher").
			Optional().
			Nillable().
			Comment("Publisher JID when the service exposes it."),
		field.Bytes("payload").
			Comment("The <item/> element exactly as received, in the stored form of plugins/pubsubcache/payloadcodec (packed, or raw XML): unpacked bytes are served back unchanged."),
		field.String("cursor").
			Optional().
			Nillable().
			Comment("Opaque RSM cursor the service handed out for this item, if any."),
		field.Bytes("parsed").
			Optional().
			SchemaType(map[string]string{dialect.SQLite: "json", dialect.Postgres: "jsonb"}).
			Comment("Parser output, NULL when not parsed: JSON on PostgreSQL; on SQLite in the stored form of payloadcodec.PackParsed (packed with the payload as dictionary, or the JSON itself)."),
		field.Enum("parse_state").
			Values("none", "pending", "ok", "error").
			Default("none").
			Comment("none: no parser applies; pending: parser not available yet; ok; error."),
		field.Text("parse_error").
			Optional().
			Nillable(),
		field.Text("search_text").
			Default("").
			Comment("Text indexed for full-text search (payload text without markup + parser text fields)."),
		field.Int64("position").
			Default(0).
			Comment("Position of the item in the service's order (ascending = service order)."),
		field.Bytes("digest").
			Optional().
			Nillable().
			Comment("SHA-256 of the payload: an item stored again with the same digest is not written, parsed or indexed again."),
		field.String("parser_version").
			Optional().
			Nillable().
			Comment("Version of the plugin whose parser parsed the item (a new version parses it again)."),
	}
}

// Edges of the PubsubItem.
func (PubsubItem) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("node", PubsubNode.Type).
			Ref("items").
			Field("node_id").
			Unique().
			Required(),
	}
}

// Indexes of the PubsubItem.
func (PubsubItem) Indexes() []ent.Index {
	return []ent.Index{
		// One row per item id in a node: upserts conflict on this key.
		index.Fields("node_id", "item_id").Unique(),
		// Answering requests in the service's order (max_items, RSM index/cursors).
		index.Fields("node_id", "position"),
		// order_by modification / creation.
		index.Fields("node_id", "updated_at"),
		index.Fields("node_id", "created_at"),
		// Finding the items whose parse is pending (every minute and at
		// each parser start) without reading the whole table.
		index.Fields("parse_state"),
	}
}
