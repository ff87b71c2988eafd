package pubsubcache

// Reads of cached items that answer requests (the items of a node, a
// page of it, its last item, where a cursor points) and what a damaged
// stored payload makes of them.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
	"example.org/backend/plugins/xep0060/wire"
)

// readQuery is a cache read: all items, the last max, or ids, in the
// service's order or by creation/modification as the cache saw them.
type readQuery struct {
	nodeID   int
	maxItems int
	ids      []string
	// idsInRequestOrder answers ids in the order of the request (Prosody);
	// otherwise in the node's order (ejabberd).
	idsInRequestOrder bool
	orderBy           string
}

// readItems answers q with one SQL query.
func (s *nodeStore) readItems(ctx context.Context, q readQuery) ([]wire.Item, error) {
	var b strings.Builder
	args := []any{q.nodeID}
	b.WriteString("SELECT item_id, publisher, payload FROM pubsub_items WHERE node_id = " + s.ph(1))
	if len(q.ids) > 0 {
		b.WriteString(" AND item_id IN (" + s.placeholders(1, len(q.ids)) + ")")
		for _, id := range q.ids {
			args = append(args, id)
		}
	}
	// The (node_id, position) index gives the service's order (SQLite
	// appends the rowid to index keys: no sort step).
	order := "position, id"
	switch q.orderBy {
	case "creation":
		order = "created_at, position, id"
	case "modification":
		order = "updated_at, position, id"
	}
	desc := q.maxItems > 0 && len(q.ids) == 0
	if desc {
		order = strings.ReplaceAll(order, ",", " DESC,") + " DESC LIMIT " + strconv.Itoa(q.maxItems)
	}
	b.WriteString(" ORDER BY " + order)
	rows, err := s.db.DB.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("read cached items: %w", err)
	}
	defer rows.Close()
	var out []wire.Item
	for rows.Next() {
		var it wire.Item
		var pub sql.NullString
		if err := rows.Scan(&it.ID, &pub, &it.Payload); err != nil {
			return nil, fmt.Errorf("read cached items: %w", err)
		}
		var err error
		if it.Payload, err = payloadcodec.Unpack(it.Payload); err != nil {
			return nil, &damagedError{nodeID: q.nodeID, itemID: it.ID, err: err}
		}
		it.Publisher = pub.String
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cached items: %w", err)
	}
	if desc {
		slices.Reverse(out)
	}
	if len(q.ids) > 0 && q.idsInRequestOrder {
		byID := make(map[string]wire.Item, len(out))
		for _, it := range out {
			byID[it.ID] = it
		}
		out = out[:0]
		// An id requested twice comes twice (as Prosody answers).
		for _, id := range q.ids {
			if it, ok := byID[id]; ok {
				out = append(out, it)
			}
		}
	}
	if out == nil {
		out = []wire.Item{}
	}
	return out, nil
}

// damagedError is a cached item whose stored payload does not unpack
// (payloadcodec.ErrDamaged): it is never served; forgetDigest and a full
// sync store it again.
type damagedError struct {
	nodeID int
	itemID string
	err    error
}

func (e *damagedError) Error() string { return fmt.Sprintf("cached item %s: %v", e.itemID, e.err) }
func (e *damagedError) Unwrap() error { return e.err }

// forgetDigest clears the stored digest of the node's item id, so that
// the next listing that brings it writes and parses it again (its stored
// payload is damaged).
func (s *nodeStore) forgetDigest(ctx context.Context, nodeID int, itemID string) error {
	if err := s.db.Client.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemID(itemID)).ClearDigest().Exec(ctx); err != nil {
		return fmt.Errorf("forget the digest of item %s: %w", itemID, err)
	}
	return nil
}

// pageItem is a cached item with its stored service cursor.
type pageItem struct {
	wire.Item
	cursor string
}

// readPage reads limit items of the node from index offset on, in the
// node's order, with their stored cursors.
func (s *nodeStore) readPage(ctx context.Context, nodeID, offset, limit int) ([]pageItem, error) {
	rows, err := s.db.DB.QueryContext(ctx, "SELECT item_id, publisher, payload, cursor FROM pubsub_items WHERE node_id = "+s.ph(1)+
		" ORDER BY position, id LIMIT "+s.ph(2)+" OFFSET "+s.ph(3), nodeID, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("read a page of cached items: %w", err)
	}
	defer rows.Close()
	var out []pageItem
	for rows.Next() {
		var it pageItem
		var pub, cur sql.NullString
		if err := rows.Scan(&it.ID, &pub, &it.Payload, &cur); err != nil {
			return nil, fmt.Errorf("read a page of cached items: %w", err)
		}
		var err error
		if it.Payload, err = payloadcodec.Unpack(it.Payload); err != nil {
			return nil, &damagedError{nodeID: nodeID, itemID: it.ID, err: err}
		}
		it.Publisher, it.cursor = pub.String, cur.String
		out = append(out, it)
	}
	return out, rows.Err()
}

// lastItem reads the node's last item in its order (ok false: empty).
func (s *nodeStore) lastItem(ctx context.Context, nodeID int) (wire.Item, bool, error) {
	items, err := s.readItems(ctx, readQuery{nodeID: nodeID, maxItems: 1})
	if err != nil || len(items) == 0 {
		return wire.Item{}, false, err
	}
	return items[0], true, nil
}

// cursorIndex returns the index, in the node's order, of the item a
// cursor names (the service's, or one the cache issued), -1 when no
// cached item has it.
func (s *nodeStore) cursorIndex(ctx context.Context, nodeID int, cursor string) (int, error) {
	col, val := "cursor", cursor
	if id, ok := strings.CutPrefix(cursor, cacheCursorPrefix); ok {
		col, val = "item_id", id
	}
	var pos int64
	var rowID int
	err := s.db.DB.QueryRowContext(ctx, "SELECT position, id FROM pubsub_items WHERE node_id = "+s.ph(1)+" AND "+col+" = "+s.ph(2)+
		" ORDER BY position, id LIMIT 1", nodeID, val).Scan(&pos, &rowID)
	if errors.Is(err, sql.ErrNoRows) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find a cursor's item: %w", err)
	}
	var idx int
	err = s.db.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM pubsub_items WHERE node_id = "+s.ph(1)+
		" AND (position < "+s.ph(2)+" OR position = "+s.ph(3)+" AND id < "+s.ph(4)+")", nodeID, pos, pos, rowID).Scan(&idx)
	if err != nil {
		return 0, fmt.Errorf("find a cursor's index: %w", err)
	}
	return idx, nil
}
