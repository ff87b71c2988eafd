package pubsubcache

import (
	"context"
	"database/sql"
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

// orderedItem is an item's place in the node.
type orderedItem struct {
	id     string
	cursor string
}

// nodeOrder lists the node's item ids and stored cursors in the service's
// order.
func (d *db) nodeOrder(ctx context.Context, nodeID int) ([]orderedItem, error) {
	rows, err := d.store.DB.QueryContext(ctx, "SELECT item_id, cursor FROM pubsub_items WHERE node_id = "+d.ph(1)+" ORDER BY position, id", nodeID)
	if err != nil {
		return nil, fmt.Errorf("read the order of cached items: %w", err)
	}
	defer rows.Close()
	var out []orderedItem
	for rows.Next() {
		var it orderedItem
		var cur sql.NullString
		if err := rows.Scan(&it.id, &cur); err != nil {
			return nil, fmt.Errorf("read the order of cached items: %w", err)
		}
		it.cursor = cur.String
		out = append(out, it)
	}
	return out, rows.Err()
}

func (it orderedItem) cursorOut() string {
	if it.cursor != "" {
		return it.cursor
	}
	return cacheCursorPrefix + it.id
}

// locate returns the index of the item a cursor names, or -1.
func locate(order []orderedItem, cursor string) int {
	if id, ok := strings.CutPrefix(cursor, cacheCursorPrefix); ok {
		for i, it := range order {
			if it.id == id {
				return i
			}
		}
		return -1
	}
	for i, it := range order {
		if it.cursor == cursor {
			return i
		}
	}
	return -1
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
	order, err := p.db.nodeOrder(ctx, n.id)
	if err != nil {
		return nil, false, err
	}
	total := len(order)
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
		i := locate(order, *q.After)
		if i < 0 {
			return nil, false, nil
		}
		start = i + 1
		end = min(total, start+max)
	case q.Before != nil && *q.Before == "":
		// The last page.
		end = total
		start = max0(total - max)
	case q.Before != nil:
		i := locate(order, *q.Before)
		if i < 0 {
			return nil, false, nil
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
		return &xep0060.ItemsPage{Items: []wire.Item{}, RSM: set, FromCache: true, Complete: rsmComplete(set, 0)}, true, nil
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
	ids := make([]string, 0, end-start)
	for _, it := range order[start:end] {
		ids = append(ids, it.id)
	}
	items, err := p.db.readItems(ctx, readQuery{nodeID: n.id, ids: ids})
	if err != nil {
		return nil, false, err
	}
	if len(items) != len(ids) {
		return nil, false, nil // changed meanwhile: let the service answer
	}
	set.First, set.Last = order[start].cursorOut(), order[end-1].cursorOut()
	return &xep0060.ItemsPage{Items: items, RSM: set, FromCache: true, Complete: rsmComplete(set, len(items))}, true, nil
}

// rsmComplete says what the pubsub client says of a live page: whole when
// the count says so and it starts at the beginning.
func rsmComplete(set *wire.RSMSet, n int) bool {
	return *set.Count == n && (set.FirstIndex == nil || *set.FirstIndex <= 0 || n == 0)
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
	order, err := p.db.nodeOrder(ctx, n.id)
	if err != nil {
		return ""
	}
	start, end := -1, -1
	for i, it := range order {
		if it.id == page.Items[0].ID {
			start = i
		}
		if it.id == page.Items[len(page.Items)-1].ID {
			end = i + 1
		}
	}
	max := len(order)
	if req.RSM.Max != nil {
		max = *req.RSM.Max
	}
	if start != 0 || end < 0 || end-max >= 0 {
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
	first := orderedItem{id: items[0].ID, cursor: cursors[items[0].ID]}
	last := orderedItem{id: items[len(items)-1].ID, cursor: cursors[items[len(items)-1].ID]}
	return &wire.RSMSet{Count: &total, FirstIndex: &idx, First: first.cursorOut(), Last: last.cursorOut()}, nil
}
