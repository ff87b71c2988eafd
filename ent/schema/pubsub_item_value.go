package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// PubsubItemValue holds the schema definition for the PubsubItemValue
// entity: one value of an indexed path of a cached item's parsed JSON, the
// side table that makes searches on declared paths fast on both engines
// (maintained by plugins/pubsubcache/search.IndexItem).
//
// A scalar value at a path is one row (role 1). An array or object value
// is one row for the whole value (role 2, text = canonical JSON) plus, for
// an array, one row per scalar element (role 3). JSON null and missing
// paths have no row.
//
// Text is stored as bytes so that comparisons and indexes use byte order
// (UTF-8 code point order) on both engines, whatever the PostgreSQL
// database's collation.
type PubsubItemValue struct {
	ent.Schema
}

// Fields of the PubsubItemValue.
func (PubsubItemValue) Fields() []ent.Field {
	return []ent.Field{
		field.Int("item_id").
			Comment("The item (pubsub_items.id)."),
		field.String("path").
			Comment("Canonical path (search.Path.String())."),
		field.Int("role").
			Comment("1: scalar value at path; 2: whole array/object value; 3: scalar element of an array value."),
		field.String("kind").
			MaxLen(1).
			Comment("s: string, n: number, b: bool, a: array, o: object."),
		field.Bytes("value_text").
			Optional().
			Nillable().
			Comment("UTF-8 text: the string; \"true\"/\"false\"; canonical JSON of numbers, arrays and objects."),
		field.Bytes("value_fold").
			Optional().
			Nillable().
			Comment("Case-folded string (kind s only), for ilike/ioverlap; NULL when it equals value_text (search.Fold leaves most strings unchanged)."),
		field.Float("value_num").
			Optional().
			Nillable().
			Comment("The number (kind n only)."),
	}
}

// Edges of the PubsubItemValue.
func (PubsubItemValue) Edges() []ent.Edge {
	return []ent.Edge{
		// Deleting an item deletes its values.
		edge.To("item", PubsubItem.Type).
			Field("item_id").
			Unique().
			Required().
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the PubsubItemValue.
func (PubsubItemValue) Indexes() []ent.Index {
	return []ent.Index{
		// Filters: equality, ranges and prefix patterns per kind of value.
		// The indexes cover every column the filters read (kind, role,
		// item_id), so a filter never reads the table. The number and
		// folded-text indexes are partial: most values are strings, and
		// most strings are their own case fold (value_fold NULL); a filter
		// on value_num or value_fold implies IS NOT NULL, which both
		// engines use to pick the partial index.
		index.Fields("path", "value_text", "kind", "role", "item_id").StorageKey("pubsubitemvalue_path_value_text"),
		index.Fields("path", "value_num", "kind", "role", "item_id").StorageKey("pubsubitemvalue_path_value_num").
			Annotations(entsql.IndexWhere("value_num IS NOT NULL")),
		index.Fields("path", "value_fold", "kind", "role", "item_id").StorageKey("pubsubitemvalue_path_value_fold").
			Annotations(entsql.IndexWhere("value_fold IS NOT NULL")),
		// Ordering by a path, negated filters, reindexing and deleting an
		// item's values (covering the sort columns: (item_id, path, role)
		// alone saves 119 of 780 bytes per microblog item on SQLite but
		// makes a sort of every item on a path or a negated filter 1.5 to
		// 3 times slower there, reading the table row of each item).
		index.Fields("item_id", "path", "role", "kind", "value_num", "value_text").StorageKey("pubsubitemvalue_item_id_path"),
	}
}
