package pubsubcache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// cacheCursorPrefix starts the cursors the cache issues for items whose
// service cursor it has not seen. They are valid for paging through the
// cache; a request carrying one goes to the network only while the node
// is not served from the cache (the service would not know it).
const cacheCursorPrefix = "bkc:"

// pageItem is a cached item with its stored service cursor.
type pageItem struct {
	wire.Item
	cursor string
}

// cursorOut is the cursor the cache hands out for an item: the service's
// when it saw it, else its own.
func cursorOut(id, cursor string) string {
	if cursor != "" {
		return cursor
	}
	return cacheCursorPrefix + id
}

// cursorIndex returns the index, in the node's order, of the item a
// cursor names (the service's, or one the cache issued), -1 when no
// cached item has it.
func (d *db) cursorIndex(ctx context.Context, nodeID int, cursor string) (int, error) {
	col, val := "cursor", cursor
	if id, ok := strings.CutPrefix(cursor, cacheCursorPrefix); ok {
		col, val = "item_id", id
	}
	var pos int64
	var rowID int
	err := d.store.DB.QueryRowContext(ctx, "SELECT position, id FROM pubsub_items WHERE node_id = "+d.ph(1)+" AND "+col+" = "+d.ph(2)+
		" ORDER BY position, id LIMIT 1", nodeID, val).Scan(&pos, &rowID)
	if errors.Is(err, sql.ErrNoRows) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find a cursor's item: %w", err)
	}
	var idx int
	err = d.store.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM pubsub_items WHERE node_id = "+d.ph(1)+
		" AND (position < "+d.ph(2)+" OR position = "+d.ph(3)+" AND id < "+d.ph(4)+")", nodeID, pos, pos, rowID).Scan(&idx)
	if err != nil {
		return 0, fmt.Errorf("find a cursor's index: %w", err)
	}
	return idx, nil
}

// readPage reads limit items of the node from index offset on, in the
// node's order, with their stored cursors.
func (d *db) readPage(ctx context.Context, nodeID, offset, limit int) ([]pageItem, error) {
	rows, err := d.store.DB.QueryContext(ctx, "SELECT item_id, publisher, payload, cursor FROM pubsub_items WHERE node_id = "+d.ph(1)+
		" ORDER BY position, id LIMIT "+d.ph(2)+" OFFSET "+d.ph(3), nodeID, limit, offset)
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
		it.Publisher, it.cursor = pub.String, cur.String
		out = append(out, it)
	}
	return out, rows.Err()
}

// answerRSM answers an RSM request from the cache the way the service
// would (items, count, index; cursors valid for the cache), or returns
// ok false when it cannot tell what the service would answer: the service
// does not page, a cursor is unknown, an index is past the end, or the
// service's way of reporting an index is not learned yet.
func (p *Plugin) answerRSM(ctx context.Context, n nodeInfo, beh behaviour, q *wire.RSMQuery) (*xep0060.ItemsPage, bool, error) {
	if beh.RSM != serviceprofile.RsmYes || q.After != nil && q.Before != nil || q.Index != nil && (q.After != nil || q.Before != nil) {
		return nil, false, nil
	}
	counts, err := p.db.countItems(ctx, []int{n.id})
	if err != nil {
		return nil, false, err
	}
	total := counts[n.id]
	max := total
	if q.Max != nil {
		if *q.Max < 0 {
			return nil, false, nil
		}
		max = *q.Max
	}
	var start, end int
	beforeCursor := false
	switch {
	case q.Index != nil:
		if *q.Index < 0 || *q.Index >= total {
			return nil, false, nil // ejabberd fails past the end
		}
		start = *q.Index
		end = min(total, start+max)
	case q.After != nil:
		i, err := p.db.cursorIndex(ctx, n.id, *q.After)
		if err != nil || i < 0 {
			return nil, false, err
		}
		start = i + 1
		end = min(total, start+max)
	case q.Before != nil && *q.Before == "":
		// The last page.
		end = total
		start = max0(total - max)
	case q.Before != nil:
		i, err := p.db.cursorIndex(ctx, n.id, *q.Before)
		if err != nil || i < 0 {
			return nil, false, err
		}
		end = i
		start = max0(end - max)
		beforeCursor = true
	default:
		start, end = 0, min(total, max)
	}
	if start > end {
		start = end
	}
	count := total
	set := &wire.RSMSet{Count: &count}
	if start == end {
		switch beh.EmptyIndex {
		case "minus_one":
			v := -1
			set.FirstIndex = &v
		case "absent":
		default:
			return nil, false, nil
		}
		return &xep0060.ItemsPage{Items: []wire.Item{}, RSM: set, FromCache: true, Complete: xep0060.SetComplete(set, 0)}, true, nil
	}
	if beforeCursor {
		switch beh.BeforeIndex {
		case "unclamped":
			v := end - max
			set.FirstIndex = &v
		case "real":
			v := start
			set.FirstIndex = &v
		case "absent":
		default:
			return nil, false, nil
		}
	} else {
		v := start
		set.FirstIndex = &v
	}
	page, err := p.db.readPage(ctx, n.id, start, end-start)
	if err != nil {
		return nil, false, err
	}
	if len(page) != end-start {
		return nil, false, nil // changed meanwhile: let the service answer
	}
	items := make([]wire.Item, len(page))
	for i, it := range page {
		items[i] = it.Item
	}
	first, last := page[0], page[len(page)-1]
	set.First, set.Last = cursorOut(first.ID, first.cursor), cursorOut(last.ID, last.cursor)
	return &xep0060.ItemsPage{Items: items, RSM: set, FromCache: true, Complete: xep0060.SetComplete(set, len(items))}, true, nil
}

func max0(v int) int { return max(v, 0) }

// storeCursors keeps the service's cursors of the first and last items of
// an answer (DESIGN §6: stored when handed out), for cached items.
func (p *Plugin) storeCursors(ctx context.Context, k nodeKey, page *xep0060.ItemsPage) {
	if page.RSM == nil || len(page.Items) == 0 {
		return
	}
	n, ok, err := p.node(ctx, k)
	if err != nil || !ok || !cached(n) {
		return
	}
	set := func(id, cursor string) {
		if cursor == "" || strings.HasPrefix(cursor, cacheCursorPrefix) {
			return
		}
		if _, err := p.h.Store.Client.PubsubItem.Update().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemID(id)).SetCursor(cursor).Save(ctx); err != nil {
			p.log.Warn("storing a service cursor", "node", k.node, "item", id, "err", err)
		}
	}
	set(page.Items[0].ID, page.RSM.First)
	set(page.Items[len(page.Items)-1].ID, page.RSM.Last)
}

// beforeIndexKind tells, from a live answer to <before>CURSOR</before>,
// how the service reports the page's index: "real" (the first item's
// index) or "unclamped" (the cursor's index minus max, negative near the
// start: ejabberd). Only a page cut by the start of the node tells them
// apart; "" when this answer does not.
func (p *Plugin) beforeIndexKind(ctx context.Context, k nodeKey, req *xep0060.ItemsRequest, page *xep0060.ItemsPage) string {
	if req.RSM == nil || req.RSM.Before == nil || *req.RSM.Before == "" || page.RSM == nil || page.RSM.FirstIndex == nil || len(page.Items) == 0 {
		return ""
	}
	n, ok, err := p.node(ctx, k)
	if err != nil || !ok || n.state != StateComplete {
		return ""
	}
	start, err := p.db.cursorIndex(ctx, n.id, cacheCursorPrefix+page.Items[0].ID)
	if err != nil || start != 0 {
		return ""
	}
	last, err := p.db.cursorIndex(ctx, n.id, cacheCursorPrefix+page.Items[len(page.Items)-1].ID)
	if err != nil || last < 0 {
		return ""
	}
	end := last + 1
	counts, err := p.db.countItems(ctx, []int{n.id})
	if err != nil {
		return ""
	}
	max := counts[n.id]
	if req.RSM.Max != nil {
		max = *req.RSM.Max
	}
	if end-max >= 0 {
		return ""
	}
	switch *page.RSM.FirstIndex {
	case 0:
		return "real"
	case end - max:
		return "unclamped"
	}
	return ""
}

// maxItemsSet is the <set/> a service that pages max_items answers
// (ejabberd) puts on its answer.
func (p *Plugin) maxItemsSet(ctx context.Context, n nodeInfo, items []wire.Item, maxItems int, emptyIndex string) (*wire.RSMSet, error) {
	if len(items) == 0 {
		// An empty node: a count of 0 (ejabberd gives no index).
		zero := 0
		set := &wire.RSMSet{Count: &zero}
		if emptyIndex == "minus_one" {
			v := -1
			set.FirstIndex = &v
		}
		return set, nil
	}
	counts, err := p.db.countItems(ctx, []int{n.id})
	if err != nil {
		return nil, err
	}
	total := counts[n.id]
	idx := total - maxItems
	rows, err := p.h.Store.Client.PubsubItem.Query().
		Where(pubsubitem.NodeID(n.id), pubsubitem.ItemIDIn(items[0].ID, items[len(items)-1].ID)).
		Select(pubsubitem.FieldItemID, pubsubitem.FieldCursor).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("read cursors: %w", err)
	}
	cursors := map[string]string{}
	for _, r := range rows {
		if r.Cursor != nil {
			cursors[r.ItemID] = *r.Cursor
		}
	}
	first, last := items[0].ID, items[len(items)-1].ID
	return &wire.RSMSet{Count: &total, FirstIndex: &idx, First: cursorOut(first, cursors[first]), Last: cursorOut(last, cursors[last])}, nil
}
