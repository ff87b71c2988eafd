package pubsubcache

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	entsql "entgo.io/ent/dialect/sql"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
	"example.org/backend/ent/predicate"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/pubsubitemvalue"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
	"example.org/backend/plugins/xep0060/wire"
)

// storedItem is one item to write: raw (parse_state pending when the
// node's analyser has a parser, none otherwise), or already parsed (a sync
// page parsed before it is stored: ok or error, with parsed and parseErr).
// An unchanged payload keeps its parse.
type storedItem struct {
	wire.Item
	digest        []byte
	cursor        string
	parseState    pubsubitem.ParseState
	parsed        json.RawMessage
	parseErr      string
	parserVersion string
	searchText    string
	position      int64
}

// digestOf is the digest stored with a payload.
func digestOf(payload []byte) []byte {
	d := sha256.Sum256(payload)
	return d[:]
}

// keepParse is true on the stored row when its payload did not change and
// it has a parse state of its own: it keeps it (and its parsed data, its
// search text, its modification time).
const keepParse = "(" + samePayload + " AND pubsub_items.parse_state <> 'none')"

// samePayload is true on the stored row when the new payload is the same
// (rows stored before digests compare their bytes).
const samePayload = "(pubsub_items.digest = excluded.digest OR pubsub_items.digest IS NULL AND pubsub_items.payload = excluded.payload)"

// upsertItems writes raw items of a node (insert, or replace the payload,
// publisher and position of an existing id; a stored cursor is replaced
// only by one the item brings). An item whose payload is unchanged keeps
// its parse; a changed one loses it (and its search values, when
// clearValues). The modification time moves when the payload changed, or
// always when republished (a notification: the service saw a publish).
// It returns the ids whose parse is pending after the write.
func (s *nodeStore) upsertItems(ctx context.Context, c *ent.Client, nodeID int, items []storedItem, clearValues, republished bool) ([]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	resolve := entsql.ResolveWith(func(u *entsql.UpdateSet) {
		u.SetExcluded(pubsubitem.FieldPayload).SetExcluded(pubsubitem.FieldPublisher).SetExcluded(pubsubitem.FieldPosition).SetExcluded(pubsubitem.FieldDigest)
		u.Set(pubsubitem.FieldCursor, entsql.Expr("COALESCE(excluded.cursor, pubsub_items.cursor)"))
		for _, col := range []string{pubsubitem.FieldParseState, pubsubitem.FieldParsed, pubsubitem.FieldParseError, pubsubitem.FieldSearchText, pubsubitem.FieldParserVersion} {
			u.Set(col, entsql.Expr("CASE WHEN "+keepParse+" THEN pubsub_items."+col+" ELSE excluded."+col+" END"))
		}
		if republished {
			u.SetExcluded(pubsubitem.FieldUpdatedAt)
		} else {
			u.Set(pubsubitem.FieldUpdatedAt, entsql.Expr("CASE WHEN "+samePayload+" THEN pubsub_items.updated_at ELSE excluded.updated_at END"))
		}
	})
	const chunk = 400
	ids := make([]string, len(items))
	for start := 0; start < len(items); start += chunk {
		part := items[start:min(start+chunk, len(items))]
		bs := make([]*ent.PubsubItemCreate, len(part))
		for i, it := range part {
			ids[start+i] = it.ID
			bs[i] = c.PubsubItem.Create().SetNodeID(nodeID).SetItemID(it.ID).SetPayload(payloadcodec.Pack(it.Payload)).
				SetNillablePublisher(nilIfEmpty(it.Publisher)).SetNillableCursor(nilIfEmpty(it.cursor)).
				SetParseState(it.parseState).SetSearchText(ftsText(it.searchText)).SetPosition(it.position).
				SetNillableParseError(nilIfEmpty(it.parseErr)).SetNillableParserVersion(nilIfEmpty(it.parserVersion))
			if it.digest != nil {
				bs[i].SetDigest(it.digest)
			} else {
				bs[i].SetDigest(digestOf(it.Payload))
			}
			if b := s.parsedStored(it.parsed, it.Payload); b != nil {
				bs[i].SetParsed(b)
			}
		}
		if err := c.PubsubItem.CreateBulk(bs...).OnConflict(entsql.ConflictColumns(pubsubitem.FieldNodeID, pubsubitem.FieldItemID), resolve).Exec(ctx); err != nil {
			return nil, fmt.Errorf("store %d items of node %d: %w", len(part), nodeID, err)
		}
	}
	var pending []string
	for start := 0; start < len(ids); start += 500 {
		rows, err := c.PubsubItem.Query().
			Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids[start:min(start+500, len(ids))]...), pubsubitem.ParseStateIn(pubsubitem.ParseStatePending, pubsubitem.ParseStateNone)).
			Select(pubsubitem.FieldID, pubsubitem.FieldItemID, pubsubitem.FieldParseState).All(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the parse state of stored items of node %d: %w", nodeID, err)
		}
		var unparsed []int
		for _, r := range rows {
			unparsed = append(unparsed, r.ID)
			if r.ParseState == pubsubitem.ParseStatePending {
				pending = append(pending, r.ItemID)
			}
		}
		if clearValues && len(unparsed) > 0 {
			if _, err := c.PubsubItemValue.Delete().Where(pubsubitemvalue.ItemIDIn(unparsed...)).Exec(ctx); err != nil {
				return nil, fmt.Errorf("clear search values of re-published items: %w", err)
			}
		}
	}
	return pending, nil
}

// indexParsed writes the search values of the node's items that were
// stored parsed (parsed by item id).
func (s *nodeStore) indexParsed(ctx context.Context, c *ent.Client, nodeID int, parsed map[string]json.RawMessage, paths []string,
	index func(ctx context.Context, c *ent.Client, rowID int, parsed json.RawMessage, paths []string) error) error {
	if len(parsed) == 0 || len(paths) == 0 || index == nil {
		return nil
	}
	ids := make([]string, 0, len(parsed))
	for id := range parsed {
		ids = append(ids, id)
	}
	for start := 0; start < len(ids); start += 500 {
		rows, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids[start:min(start+500, len(ids))]...), pubsubitem.ParseStateEQ(pubsubitem.ParseStateOk)).
			Select(pubsubitem.FieldID, pubsubitem.FieldItemID).All(ctx)
		if err != nil {
			return fmt.Errorf("read stored item ids of node %d: %w", nodeID, err)
		}
		for _, r := range rows {
			if err := index(ctx, c, r.ID, parsed[r.ItemID], paths); err != nil {
				return fmt.Errorf("index item %s of node %d: %w", r.ItemID, nodeID, err)
			}
		}
	}
	return nil
}

// markPending makes the node's items that have no parse state (stored
// before an analyser with a parser applied) parse pending; it returns how
// many.
func (s *nodeStore) markPending(ctx context.Context, c *ent.Client, nodeID int) (int, error) {
	n, err := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ParseStateEQ(pubsubitem.ParseStateNone)).
		SetParseState(pubsubitem.ParseStatePending).Save(ctx)
	if err != nil {
		return 0, fmt.Errorf("mark items of node %d for parsing: %w", nodeID, err)
	}
	return n, nil
}

// reparseAll makes every parsed item of the node parse pending again (its
// analyser changed), or none when the new analyser has no parser.
func (s *nodeStore) reparseAll(ctx context.Context, c *ent.Client, nodeID int, parser bool) (int, error) {
	state := pubsubitem.ParseStateNone
	if parser {
		state = pubsubitem.ParseStatePending
	}
	if _, err := c.PubsubItemValue.Delete().Where(pubsubitemvalue.HasItemWith(pubsubitem.NodeID(nodeID))).Exec(ctx); err != nil {
		return 0, fmt.Errorf("clear search values of node %d: %w", nodeID, err)
	}
	n, err := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ParseStateNEQ(state)).
		SetParseState(state).ClearParsed().ClearParseError().Save(ctx)
	if err != nil {
		return 0, fmt.Errorf("re-parse items of node %d: %w", nodeID, err)
	}
	return n, nil
}

// itemPositions returns the stored positions of the node's items by id
// (all items when ids is empty).
func (s *nodeStore) itemPositions(ctx context.Context, c *ent.Client, nodeID int, ids []string) (map[string]int64, error) {
	q := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID))
	if len(ids) > 0 {
		q.Where(pubsubitem.ItemIDIn(ids...))
	}
	rows, err := q.Select(pubsubitem.FieldItemID, pubsubitem.FieldPosition).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("read positions of node %d: %w", nodeID, err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.ItemID] = r.Position
	}
	return out, nil
}

// idsSorted reports whether the node's cached items among ids come in the
// order of ids.
func (s *nodeStore) idsSorted(ctx context.Context, nodeID int, ids []string) (bool, error) {
	pos, err := s.itemPositions(ctx, s.db.Client, nodeID, ids)
	if err != nil {
		return false, err
	}
	last := int64(-1 << 62)
	for _, id := range ids {
		p, ok := pos[id]
		if !ok {
			continue
		}
		if p < last {
			return false, nil
		}
		last = p
	}
	return true, nil
}

// maxPosition returns the largest position of the node (-1 when empty).
func (s *nodeStore) maxPosition(ctx context.Context, c *ent.Client, nodeID int) (int64, error) {
	r, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID)).Order(ent.Desc(pubsubitem.FieldPosition)).
		Select(pubsubitem.FieldPosition).First(ctx)
	switch {
	case ent.IsNotFound(err):
		return -1, nil
	case err != nil:
		return 0, fmt.Errorf("read last position of node %d: %w", nodeID, err)
	}
	return r.Position, nil
}

// idAt returns the id of the node's item at position pos ("" when none).
func (s *nodeStore) idAt(ctx context.Context, c *ent.Client, nodeID int, pos int64) (string, error) {
	ids, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.Position(pos)).Limit(1).Select(pubsubitem.FieldItemID).Strings(ctx)
	if err != nil {
		return "", fmt.Errorf("read the item at position %d: %w", pos, err)
	}
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}

// laterCursor returns the service cursor of the node's first item that
// has one and is not its first item, with its index (-1: none).
func (s *nodeStore) laterCursor(ctx context.Context, nodeID int) (string, int, error) {
	rows, err := s.db.Client.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.CursorNotNil()).
		Order(ent.Asc(pubsubitem.FieldPosition), ent.Asc(pubsubitem.FieldID)).Limit(2).Select(pubsubitem.FieldCursor).All(ctx)
	if err != nil {
		return "", -1, fmt.Errorf("read cursors: %w", err)
	}
	for _, r := range rows {
		idx, err := s.cursorIndex(ctx, nodeID, *r.Cursor)
		if err != nil {
			return "", -1, err
		}
		if idx >= 1 {
			return *r.Cursor, idx, nil
		}
	}
	return "", -1, nil
}

// setPosition places one item.
func (s *nodeStore) setPosition(ctx context.Context, c *ent.Client, nodeID int, id string, pos int64) error {
	if err := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemID(id)).SetPosition(pos).Exec(ctx); err != nil {
		return fmt.Errorf("place item %s: %w", id, err)
	}
	return nil
}

// setCursor stores the service's cursor of one item.
func (s *nodeStore) setCursor(ctx context.Context, c *ent.Client, nodeID int, id, cursor string) error {
	if err := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemID(id)).SetCursor(cursor).Exec(ctx); err != nil {
		return fmt.Errorf("store the cursor of item %s: %w", id, err)
	}
	return nil
}

// deleteItems removes items of a node by id.
func (s *nodeStore) deleteItems(ctx context.Context, c *ent.Client, nodeID int, ids []string) error {
	for start := 0; start < len(ids); start += 500 {
		if _, err := c.PubsubItem.Delete().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids[start:min(start+500, len(ids))]...)).Exec(ctx); err != nil {
			return fmt.Errorf("delete items of node %d: %w", nodeID, err)
		}
	}
	return nil
}

// deleteAllItems removes every item of a node.
func (s *nodeStore) deleteAllItems(ctx context.Context, c *ent.Client, nodeID int) error {
	if _, err := c.PubsubItem.Delete().Where(pubsubitem.NodeID(nodeID)).Exec(ctx); err != nil {
		return fmt.Errorf("delete the items of node %d: %w", nodeID, err)
	}
	return nil
}

// purgeItems removes the node's items created (or modified) before the
// given times (nil: any); it returns how many it removed and how many are
// left.
func (s *nodeStore) purgeItems(ctx context.Context, c *ent.Client, nodeID int, createdBefore, updatedBefore *time.Time) (removed, remaining int, err error) {
	preds := []predicate.PubsubItem{pubsubitem.NodeID(nodeID)}
	if createdBefore != nil {
		preds = append(preds, pubsubitem.CreatedAtLT(*createdBefore))
	}
	if updatedBefore != nil {
		preds = append(preds, pubsubitem.UpdatedAtLT(*updatedBefore))
	}
	if removed, err = c.PubsubItem.Delete().Where(preds...).Exec(ctx); err != nil {
		return 0, 0, fmt.Errorf("purge items of node %d: %w", nodeID, err)
	}
	if remaining, err = c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID)).Count(ctx); err != nil {
		return 0, 0, fmt.Errorf("count items of node %d: %w", nodeID, err)
	}
	return removed, remaining, nil
}

// trim keeps the max most recent items of a node (the service drops older
// ones when max_items is exceeded); it returns how many it dropped.
func (s *nodeStore) trim(ctx context.Context, c *ent.Client, nodeID, max int) (int, error) {
	rows, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID)).Order(ent.Desc(pubsubitem.FieldPosition)).
		Offset(max).Select(pubsubitem.FieldID).All(ctx)
	if err != nil {
		return 0, fmt.Errorf("find items beyond max_items: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]int, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	if _, err := c.PubsubItem.Delete().Where(pubsubitem.IDIn(ids...)).Exec(ctx); err != nil {
		return 0, fmt.Errorf("drop items beyond max_items: %w", err)
	}
	return len(rows), nil
}

// countItems returns the number of cached items of each node id (pending:
// only the items whose parse is pending).
func (s *nodeStore) countItems(ctx context.Context, nodeIDs []int, pending bool) (map[int]int, error) {
	out := map[int]int{}
	if len(nodeIDs) == 0 {
		return out, nil
	}
	var rows []struct {
		NodeID int `json:"node_id"`
		Count  int `json:"count"`
	}
	q := s.db.Client.PubsubItem.Query().Where(pubsubitem.NodeIDIn(nodeIDs...))
	if pending {
		q.Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending))
	}
	if err := q.GroupBy(pubsubitem.FieldNodeID).Aggregate(ent.Count()).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("count cached items: %w", err)
	}
	for _, r := range rows {
		out[r.NodeID] = r.Count
	}
	return out, nil
}

// count returns how many items the node holds.
func (s *nodeStore) count(ctx context.Context, c *ent.Client, nodeID int) (int, error) {
	n, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID)).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count the items of node %d: %w", nodeID, err)
	}
	return n, nil
}

// clearPublishers removes the publisher of the node's items ids (the
// service's items answers carry none).
func (s *nodeStore) clearPublishers(ctx context.Context, c *ent.Client, nodeID int, ids []string) error {
	for start := 0; start < len(ids); start += 500 {
		if err := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids[start:min(start+500, len(ids))]...)).ClearPublisher().Exec(ctx); err != nil {
			return fmt.Errorf("clear publishers of node %d: %w", nodeID, err)
		}
	}
	return nil
}

// clearAllPublishers removes the publisher of every item of the node.
func (s *nodeStore) clearAllPublishers(ctx context.Context, c *ent.Client, nodeID int) error {
	if err := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.PublisherNotNil()).ClearPublisher().Exec(ctx); err != nil {
		return fmt.Errorf("clear publishers of node %d: %w", nodeID, err)
	}
	return nil
}

// countAllPending returns how many cached items wait for a parser.
func (s *nodeStore) countAllPending(ctx context.Context) (int, error) {
	n, err := s.db.Client.PubsubItem.Query().Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending)).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count items waiting for a parser: %w", err)
	}
	return n, nil
}

// nodesWithPending returns the ids of the nodes having items whose parse
// is pending.
func (s *nodeStore) nodesWithPending(ctx context.Context) ([]int, error) {
	ids, err := s.db.Client.PubsubItem.Query().Where(pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending)).
		Unique(true).Select(pubsubitem.FieldNodeID).Ints(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nodes with items to parse: %w", err)
	}
	return ids, nil
}

// pendingItems returns up to limit items of the node whose parse is
// pending, from row id after on (in row id order), and the last row id.
func (s *nodeStore) pendingItems(ctx context.Context, nodeID, after, limit int) ([]wire.Item, int, error) {
	rows, err := s.db.Client.PubsubItem.Query().
		Where(pubsubitem.NodeID(nodeID), pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending), pubsubitem.IDGT(after)).
		Order(ent.Asc(pubsubitem.FieldID)).Limit(limit).
		Select(pubsubitem.FieldID, pubsubitem.FieldItemID, pubsubitem.FieldPublisher, pubsubitem.FieldPayload).All(ctx)
	if err != nil {
		return nil, after, fmt.Errorf("read items to parse of node %d: %w", nodeID, err)
	}
	out := make([]wire.Item, len(rows))
	for i, r := range rows {
		payload, err := payloadcodec.Unpack(r.Payload)
		if err != nil {
			return nil, after, fmt.Errorf("read item %s of node %d to parse: %w", r.ItemID, nodeID, err)
		}
		out[i] = wire.Item{ID: r.ItemID, Payload: payload}
		if r.Publisher != nil {
			out[i].Publisher = *r.Publisher
		}
		after = r.ID
	}
	return out, after, nil
}

// parsedItem is a parser's result for one stored item.
type parsedItem struct {
	id string
	// payload is the payload that was parsed: a result for a payload that
	// was replaced meanwhile is dropped.
	payload    []byte
	state      pubsubitem.ParseState
	parsed     json.RawMessage
	err        string
	searchText string
	// version is the parser's version.
	version string
}

// storedState is what the store holds of an item, to tell whether a copy
// of it changes anything.
type storedState struct {
	digest        []byte
	position      int64
	cursor        string
	parseState    pubsubitem.ParseState
	parserVersion string
}

// states reads the stored state of the node's items ids.
func (s *nodeStore) states(ctx context.Context, c *ent.Client, nodeID int, ids []string) (map[string]storedState, error) {
	out := make(map[string]storedState, len(ids))
	for start := 0; start < len(ids); start += 500 {
		rows, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids[start:min(start+500, len(ids))]...)).
			Select(pubsubitem.FieldItemID, pubsubitem.FieldDigest, pubsubitem.FieldPosition, pubsubitem.FieldCursor, pubsubitem.FieldParseState, pubsubitem.FieldParserVersion).All(ctx)
		if err != nil {
			return nil, fmt.Errorf("read stored items of node %d: %w", nodeID, err)
		}
		for _, r := range rows {
			st := storedState{position: r.Position, parseState: r.ParseState}
			if r.Digest != nil {
				st.digest = *r.Digest
			}
			if r.Cursor != nil {
				st.cursor = *r.Cursor
			}
			if r.ParserVersion != nil {
				st.parserVersion = *r.ParserVersion
			}
			out[r.ItemID] = st
		}
	}
	return out, nil
}

// placeItem sets the position (and cursor, when cursor is not empty) of an
// unchanged item.
func (s *nodeStore) placeItem(ctx context.Context, c *ent.Client, nodeID int, id string, pos int64, cursor string) error {
	u := c.PubsubItem.Update().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemID(id)).SetPosition(pos)
	if cursor != "" {
		u.SetCursor(cursor)
	}
	if err := u.Exec(ctx); err != nil {
		return fmt.Errorf("place item %s: %w", id, err)
	}
	return nil
}

// storeParsed writes parse results of a node's items that are still
// pending with the parsed payload, and their search values (index, with
// paths, when paths is not empty); it returns how many it wrote.
func (s *nodeStore) storeParsed(ctx context.Context, c *ent.Client, nodeID int, results []parsedItem, paths []string,
	index func(ctx context.Context, c *ent.Client, rowID int, parsed json.RawMessage, paths []string) error) (int, error) {
	ids := make([]string, len(results))
	for i, r := range results {
		ids[i] = r.id
	}
	rows, err := c.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids...), pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending)).
		Select(pubsubitem.FieldID, pubsubitem.FieldItemID).All(ctx)
	if err != nil {
		return 0, fmt.Errorf("read items to store parse results: %w", err)
	}
	rowID := make(map[string]int, len(rows))
	for _, r := range rows {
		rowID[r.ItemID] = r.ID
	}
	written := 0
	for _, r := range results {
		id, ok := rowID[r.id]
		if !ok {
			continue
		}
		sameAs := pubsubitem.Or(pubsubitem.Digest(digestOf(r.payload)), pubsubitem.And(pubsubitem.DigestIsNil(), pubsubitem.Payload(r.payload)))
		u := c.PubsubItem.Update().Where(pubsubitem.ID(id), pubsubitem.ParseStateEQ(pubsubitem.ParseStatePending), sameAs).
			SetParseState(r.state).SetNillableParseError(nilIfEmpty(r.err)).SetSearchText(ftsText(r.searchText)).SetNillableParserVersion(nilIfEmpty(r.version))
		if b := s.parsedStored(r.parsed, r.payload); b != nil {
			u.SetParsed(b)
		}
		n, err := u.Save(ctx)
		if err != nil {
			return written, fmt.Errorf("store the parse of item %s: %w", r.id, err)
		}
		if n == 0 {
			continue // replaced meanwhile: its new payload is pending
		}
		written++
		if len(paths) > 0 && index != nil {
			if err := index(ctx, c, id, r.parsed, paths); err != nil {
				return written, fmt.Errorf("index item %s: %w", r.id, err)
			}
		}
	}
	return written, nil
}

// parsedStored is the stored form of an item's parsed JSON (nil when
// there is none: the plugin's result was validated as a JSON object): the
// canonical JSON (keys sorted, numbers as float64, compact) on
// PostgreSQL, packed with the item's payload (unpacked) as dictionary on
// SQLite (payloadcodec.PackParsed; the search reads it through
// search_parsed).
func (s *nodeStore) parsedStored(raw json.RawMessage, payload []byte) []byte {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	if s.db.Dialect == storage.DriverSQLite {
		return payloadcodec.PackParsed(b, payload)
	}
	return b
}

// cursorsOf returns the stored service cursors of the node's items ids.
func (s *nodeStore) cursorsOf(ctx context.Context, nodeID int, ids ...string) (map[string]string, error) {
	rows, err := s.db.Client.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids...)).
		Select(pubsubitem.FieldItemID, pubsubitem.FieldCursor).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("read cursors: %w", err)
	}
	out := map[string]string{}
	for _, r := range rows {
		if r.Cursor != nil {
			out[r.ItemID] = *r.Cursor
		}
	}
	return out, nil
}
