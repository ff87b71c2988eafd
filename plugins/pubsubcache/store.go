package pubsubcache

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
	"example.org/backend/ent/profile"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/pubsubnode"
	"example.org/backend/plugins/xep0060/wire"
)

// db is the cache's storage: node rows through Ent, the hot item reads in
// plain SQL (one query per cache answer).
type db struct {
	store *storage.Store
	// indexPaths returns the JSON paths the search side table indexes (nil:
	// no side table maintenance).
	indexPaths func() []string
	index      func(ctx context.Context, tx *ent.Tx, itemID int, parsed json.RawMessage, paths []string) error
}

// ph returns the i-th (1-based) placeholder of the dialect.
func (d *db) ph(i int) string {
	if d.store.Dialect == storage.DriverPostgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// profileID returns the id of the profile called name.
func (d *db) profileID(ctx context.Context, name string) (int, error) {
	id, err := d.store.Client.Profile.Query().Where(profile.NameEQ(name)).OnlyID(ctx)
	if err != nil {
		if ent.IsNotFound(err) {
			return 0, fmt.Errorf("profile %q: %w", name, errUnknownProfile)
		}
		return 0, fmt.Errorf("look up profile %q: %w", name, err)
	}
	return id, nil
}

var errUnknownProfile = errors.New("unknown profile")

// fromRow converts a node row.
func fromRow(r *ent.PubsubNode) nodeInfo {
	n := nodeInfo{id: r.ID, profileID: r.ProfileID, state: r.SyncState, fresh: r.Fresh, subscribed: r.Subscribed,
		attempts: r.Attempts, maxItems: r.MaxItems, pep: isPEP(r.Service)}
	if r.AnalyserVersion != nil {
		n.analysed, n.version = true, *r.AnalyserVersion
	}
	if r.Analyser != nil {
		n.analyser = *r.Analyser
	}
	if r.Type != nil {
		n.typ = *r.Type
	}
	if r.Subtype != nil {
		n.subtype = *r.Subtype
	}
	if r.NextAttemptAt != nil {
		n.nextAttempt = *r.NextAttemptAt
	}
	if r.LastError != nil {
		n.lastError = *r.LastError
	}
	if r.SyncedAt != nil {
		n.syncedAt = *r.SyncedAt
	}
	return n
}

// loadNode reads a node row; ok is false when there is none.
func (d *db) loadNode(ctx context.Context, profileID int, service, node string) (nodeInfo, bool, error) {
	r, err := d.store.Client.PubsubNode.Query().
		Where(pubsubnode.ProfileID(profileID), pubsubnode.Service(service), pubsubnode.Name(node)).Only(ctx)
	switch {
	case ent.IsNotFound(err):
		return nodeInfo{}, false, nil
	case err != nil:
		return nodeInfo{}, false, fmt.Errorf("read node %s on %s: %w", node, service, err)
	}
	return fromRow(r), true, nil
}

// ensureNode returns the node row, creating it (state never) when missing;
// concurrent creations of the same node end with the same row.
func (d *db) ensureNode(ctx context.Context, profileID int, service, node string) (nodeInfo, error) {
	n, ok, err := d.loadNode(ctx, profileID, service, node)
	if err != nil || ok {
		return n, err
	}
	err = d.store.Client.PubsubNode.Create().SetProfileID(profileID).SetService(service).SetName(node).
		OnConflictColumns(pubsubnode.FieldProfileID, pubsubnode.FieldService, pubsubnode.FieldName).DoNothing().Exec(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nodeInfo{}, fmt.Errorf("create node %s on %s: %w", node, service, err)
	}
	n, ok, err = d.loadNode(ctx, profileID, service, node)
	if err == nil && !ok {
		err = fmt.Errorf("create node %s on %s: row vanished", node, service)
	}
	return n, err
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nilIfZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// saveNode writes the node's analysis and state (c may be a transaction's
// client).
func saveNode(ctx context.Context, c *ent.Client, n nodeInfo, stateChanged bool) error {
	u := c.PubsubNode.UpdateOneID(n.id).
		SetNillableAnalyser(nilIfEmpty(n.analyser)).SetNillableType(nilIfEmpty(n.typ)).SetNillableSubtype(nilIfEmpty(n.subtype)).
		SetSyncState(n.state).SetFresh(n.fresh).SetSubscribed(n.subscribed).SetAttempts(n.attempts).
		SetNillableNextAttemptAt(nilIfZero(n.nextAttempt)).SetNillableLastError(nilIfEmpty(n.lastError)).
		SetNillableSyncedAt(nilIfZero(n.syncedAt)).SetNillableMaxItems(n.maxItems)
	if n.analyser == "" {
		u.ClearAnalyser().ClearType().ClearSubtype()
	}
	if n.analysed {
		u.SetAnalyserVersion(n.version)
	} else {
		u.ClearAnalyserVersion()
	}
	if n.nextAttempt.IsZero() {
		u.ClearNextAttemptAt()
	}
	if n.lastError == "" {
		u.ClearLastError()
	}
	if n.maxItems == nil {
		u.ClearMaxItems()
	}
	if stateChanged {
		u.SetSyncStateChangedAt(time.Now())
	}
	if err := u.Exec(ctx); err != nil {
		return fmt.Errorf("save node %d: %w", n.id, err)
	}
	return nil
}

// storedItem is one item to write.
type storedItem struct {
	wire.Item
	cursor     string
	parsed     json.RawMessage
	parseState pubsubitem.ParseState
	parseErr   string
	searchText string
	position   int64
}

// upsertItems writes items of node nodeID in tx (insert, or replace the
// payload, parse results and position of an existing id). A stored cursor
// is replaced only by one the item brings (sync pages hand out the cursors
// of their first and last items; the others keep what was learned).
func (d *db) upsertItems(ctx context.Context, tx *ent.Tx, nodeID int, items []storedItem) error {
	if len(items) == 0 {
		return nil
	}
	// Rows with a cursor and rows without go in separate statements: a
	// bulk insert lists the same columns for every row, and a NULL cursor
	// would overwrite a stored one.
	var with, without []storedItem
	for _, it := range items {
		if it.cursor != "" {
			with = append(with, it)
		} else {
			without = append(without, it)
		}
	}
	const chunk = 400
	for _, group := range [][]storedItem{without, with} {
		for start := 0; start < len(group); start += chunk {
			part := group[start:min(start+chunk, len(group))]
			bs := make([]*ent.PubsubItemCreate, len(part))
			for i, it := range part {
				c := tx.PubsubItem.Create().SetNodeID(nodeID).SetItemID(it.ID).SetPayload(it.Payload).
					SetNillablePublisher(nilIfEmpty(it.Publisher)).SetNillableCursor(nilIfEmpty(it.cursor)).
					SetParseState(it.parseState).SetNillableParseError(nilIfEmpty(it.parseErr)).
					SetSearchText(it.searchText).SetPosition(it.position)
				if m := parsedMap(it.parsed); m != nil {
					c.SetParsed(m)
				}
				bs[i] = c
			}
			err := tx.PubsubItem.CreateBulk(bs...).
				OnConflictColumns(pubsubitem.FieldNodeID, pubsubitem.FieldItemID).
				UpdateNewValues().
				Update(func(u *ent.PubsubItemUpsert) {
					u.UpdatePublisher().UpdateParsed().UpdateParseError().SetUpdatedAt(time.Now())
				}).Exec(ctx)
			if err != nil {
				return fmt.Errorf("store %d items of node %d: %w", len(part), nodeID, err)
			}
		}
	}
	if d.index == nil {
		return nil
	}
	paths := d.indexPaths()
	if len(paths) == 0 {
		return nil
	}
	ids := make([]string, len(items))
	parsed := make(map[string]json.RawMessage, len(items))
	for i, it := range items {
		ids[i] = it.ID
		parsed[it.ID] = it.parsed
	}
	for start := 0; start < len(ids); start += 500 {
		rows, err := tx.PubsubItem.Query().Where(pubsubitem.NodeID(nodeID), pubsubitem.ItemIDIn(ids[start:min(start+500, len(ids))]...)).
			Select(pubsubitem.FieldID, pubsubitem.FieldItemID).All(ctx)
		if err != nil {
			return fmt.Errorf("read stored item ids of node %d: %w", nodeID, err)
		}
		for _, r := range rows {
			if err := d.index(ctx, tx, r.ID, parsed[r.ItemID], paths); err != nil {
				return fmt.Errorf("index item %s of node %d: %w", r.ItemID, nodeID, err)
			}
		}
	}
	return nil
}

// parsedMap is parsed JSON as the parsed column takes it (nil when there
// is none: the plugin's result was validated as a JSON object).
func parsedMap(raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// itemPositions returns the stored positions of the node's items by id
// (all items when ids is empty).
func (d *db) itemPositions(ctx context.Context, c *ent.Client, nodeID int, ids []string) (map[string]int64, error) {
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

// maxPosition returns the largest position of the node (-1 when empty).
func maxPosition(ctx context.Context, c *ent.Client, nodeID int) (int64, error) {
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

// countItems returns the number of cached items of each node id.
func (d *db) countItems(ctx context.Context, nodeIDs []int) (map[int]int, error) {
	out := map[int]int{}
	if len(nodeIDs) == 0 {
		return out, nil
	}
	var rows []struct {
		NodeID int `json:"node_id"`
		Count  int `json:"count"`
	}
	err := d.store.Client.PubsubItem.Query().Where(pubsubitem.NodeIDIn(nodeIDs...)).
		GroupBy(pubsubitem.FieldNodeID).Aggregate(ent.Count()).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("count cached items: %w", err)
	}
	for _, r := range rows {
		out[r.NodeID] = r.Count
	}
	return out, nil
}

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
func (d *db) readItems(ctx context.Context, q readQuery) ([]wire.Item, error) {
	var b strings.Builder
	args := []any{q.nodeID}
	b.WriteString("SELECT item_id, publisher, payload FROM pubsub_items WHERE node_id = " + d.ph(1))
	if len(q.ids) > 0 {
		b.WriteString(" AND item_id IN (")
		for i, id := range q.ids {
			if i > 0 {
				b.WriteByte(',')
			}
			args = append(args, id)
			b.WriteString(d.ph(len(args)))
		}
		b.WriteByte(')')
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
	rows, err := d.store.DB.QueryContext(ctx, b.String(), args...)
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
