package search

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/pubsubitemvalue"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
)

// Roles of a pubsub_item_values row.
const (
	roleScalar  = 1 // a scalar value at the path (whole value and member)
	roleWhole   = 2 // a whole array or object value
	roleElement = 3 // a scalar element of an array value
)

// MaxIndexedText is the longest string (in bytes) stored in the side
// table; longer strings are left out of it (a B-tree entry has a size
// limit), so filters on an indexed path never match them. Declare short
// fields (tags, dates, names, JIDs) as indexed paths, not bodies.
const MaxIndexedText = 1024

// value is one row of the side table for an item.
type value struct {
	path string
	role int
	kind string
	text []byte
	fold []byte // nil unless kind s and Fold(text) != text
	num  *float64
}

// values returns the side-table rows of parsed for paths.
func values(parsed any, paths []Path) []value {
	var out []value
	seen := map[string]bool{}
	for _, p := range paths {
		ps := p.String()
		if seen[ps] {
			continue
		}
		seen[ps] = true
		v, ok := p.lookup(parsed)
		if !ok || v == nil {
			continue
		}
		switch x := v.(type) {
		case []any:
			out = append(out, value{path: ps, role: roleWhole, kind: "a", text: []byte(canonicalJSON(x))})
			for _, e := range x {
				if r, ok := scalarValue(ps, roleElement, e); ok {
					out = append(out, r)
				}
			}
		case map[string]any:
			out = append(out, value{path: ps, role: roleWhole, kind: "o", text: []byte(canonicalJSON(x))})
		default:
			if r, ok := scalarValue(ps, roleScalar, x); ok {
				out = append(out, r)
			}
		}
	}
	return out
}

func scalarValue(path string, role int, v any) (value, bool) {
	switch x := v.(type) {
	case string:
		if len(x) > MaxIndexedText {
			return value{}, false
		}
		v := value{path: path, role: role, kind: "s", text: []byte(x)}
		if f := Fold(x); f != x {
			// Only a string that is not its own fold stores it: the
			// queries on folded text read value_text otherwise (see
			// foldOp).
			v.fold = []byte(f)
		}
		return v, true
	case float64:
		return value{path: path, role: role, kind: "n", text: []byte(strconv.FormatFloat(x, 'g', -1, 64)), num: &x}, true
	case bool:
		return value{path: path, role: role, kind: "b", text: []byte(strconv.FormatBool(x))}, true
	}
	return value{}, false
}

// parsePaths parses declared paths, skipping (and reporting) bad ones.
func parsePaths(paths []string) ([]Path, error) {
	out := make([]Path, 0, len(paths))
	for _, s := range paths {
		p, err := ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("indexed path: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// IndexItem replaces the side-table rows of item itemID (pubsub_items.id)
// with the values of parsed at paths. The cache calls it in the
// transaction that stores the item's parse (c is the transaction's
// client), with the same paths for every item (the union of the
// analysers' declared IndexedPaths: the set a Searcher is built with).
// parsed may be nil (unparsed item: no rows).
func IndexItem(ctx context.Context, c *ent.Client, itemID int, parsed json.RawMessage, paths []string) error {
	ps, err := parsePaths(paths)
	if err != nil {
		return err
	}
	return indexItem(ctx, c, itemID, parsed, ps)
}

func indexItem(ctx context.Context, c *ent.Client, itemID int, parsed json.RawMessage, paths []Path) error {
	if _, err := c.PubsubItemValue.Delete().Where(pubsubitemvalue.ItemID(itemID)).Exec(ctx); err != nil {
		return fmt.Errorf("index item %d: clear values: %w", itemID, err)
	}
	if len(parsed) == 0 || len(paths) == 0 {
		return nil
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(parsed))
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("index item %d: parsed JSON: %w", itemID, err)
	}
	vals := values(doc, paths)
	if len(vals) == 0 {
		return nil
	}
	creates := make([]*ent.PubsubItemValueCreate, len(vals))
	for k, v := range vals {
		cr := c.PubsubItemValue.Create().SetItemID(itemID).SetPath(v.path).SetRole(v.role).SetKind(v.kind).
			SetValueText(v.text).SetNillableValueNum(v.num)
		if v.fold != nil {
			cr.SetValueFold(v.fold)
		}
		creates[k] = cr
	}
	if err := c.PubsubItemValue.CreateBulk(creates...).Exec(ctx); err != nil {
		return fmt.Errorf("index item %d: %w", itemID, err)
	}
	return nil
}

// Reindex rebuilds the side table of every cached item for paths (after
// the set of indexed paths changed), batch items per transaction. run runs
// each batch in a transaction (c is its client): the cache runs it in its
// writer, so that no item changes under a batch.
func Reindex(ctx context.Context, paths []string, batch int, run func(ctx context.Context, fn func(c *ent.Client) error) error) error {
	ps, err := parsePaths(paths)
	if err != nil {
		return err
	}
	if batch <= 0 {
		batch = 500
	}
	last := 0
	for {
		done := false
		err := run(ctx, func(c *ent.Client) error {
			items, err := c.PubsubItem.Query().Where(pubsubitem.IDGT(last)).Order(ent.Asc(pubsubitem.FieldID)).
				Limit(batch).Select(pubsubitem.FieldID, pubsubitem.FieldParsed, pubsubitem.FieldPayload).All(ctx)
			if err != nil {
				return fmt.Errorf("list items: %w", err)
			}
			if len(items) == 0 {
				done = true
				return nil
			}
			for _, it := range items {
				var raw json.RawMessage
				if it.Parsed != nil {
					// A damaged document gets no values (the search's
					// fetch refuses the item; its next sync heals it).
					raw, _ = storedParsed(it.Parsed, it.Payload)
				}
				if err := indexItem(ctx, c, it.ID, raw, ps); err != nil {
					return err
				}
			}
			last = items[len(items)-1].ID
			return nil
		})
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		if done {
			return nil
		}
	}
}

// storedParsed returns the parsed JSON of an item's stored parsed and
// payload columns (either engine: PostgreSQL's jsonb reads as JSON text).
func storedParsed(parsed, payload []byte) (json.RawMessage, error) {
	if len(parsed) == 0 || parsed[0] != 0 {
		return parsed, nil
	}
	xml, err := payloadcodec.Unpack(payload)
	if err != nil {
		return nil, err
	}
	return payloadcodec.UnpackParsed(parsed, xml)
}
