package search

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"

	"example.org/backend/core/storage"
	"example.org/backend/ent/profile"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
)

// Errors of Search.
var (
	// ErrInvalidQuery is wrapped by errors about a malformed query; the
	// message names the bad part.
	ErrInvalidQuery = errors.New("invalid search query")
	// ErrUnknownProfile is wrapped when a profile filter names no profile.
	ErrUnknownProfile = errors.New("unknown profile")
)

// Row is one item found.
type Row struct {
	Profile, Service, Node string
	// ItemID is the pubsub item id.
	ItemID string
	// Parsed is the item's parsed JSON (compact), nil when not parsed.
	Parsed json.RawMessage
	// Publisher and Payload are set with Query.WithPayload (Publisher is
	// empty when unknown).
	Publisher string
	Payload   []byte
}

// Searcher runs searches over the cache's database.
type Searcher struct {
	store   *storage.Store
	indexed func() []string
	// auto, when set (UseAutoIndex, before the first search), narrows
	// filters on undeclared paths with expression indexes.
	auto *AutoIndex
}

// UseAutoIndex makes filters on paths without a side-table index use (and
// ask for) expression indexes; call it before the first search.
func (s *Searcher) UseAutoIndex(a *AutoIndex) { s.auto = a }

// New returns a Searcher over store. indexed returns the paths that the
// cache indexes (IndexItem) for every item; filters and orders on them
// use the side table, others the JSON functions of the engine. Both give
// the same results; only speed differs. nil means no path is indexed.
func New(store *storage.Store, indexed func() []string) *Searcher {
	return &Searcher{store: store, indexed: indexed}
}

func invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalidQuery, err) }

// indexedSet returns the canonical indexed paths.
func (s *Searcher) indexedSet() map[string]bool {
	set := map[string]bool{}
	if s.indexed == nil {
		return set
	}
	for _, p := range s.indexed() {
		if pp, err := ParsePath(p); err == nil {
			set[pp.String()] = true
		}
	}
	return set
}

// Build returns the SQL and arguments selecting the ids of the items q
// finds, in order, for the store's dialect (for tests and EXPLAIN), and
// whether the connection needs search_fold.
func (s *Searcher) Build(q Query) (string, []any, bool, error) {
	return s.build(q, false)
}

// build writes the query selecting the ids of the items q finds, or with
// unparsed the count of the items that q's filters on parsed paths leave
// out for want of parsed data (everything else of q matching).
func (s *Searcher) build(q Query, unparsed bool) (string, []any, bool, error) {
	if err := q.validate(); err != nil {
		return "", nil, false, invalid(err)
	}
	b := &builder{pg: s.store.Dialect == storage.DriverPostgres}
	indexed := s.indexedSet()
	var fts FTS
	if q.FTS != "" {
		var err error
		if fts, err = ParseFTS(q.FTS); err != nil {
			return "", nil, false, invalid(err)
		}
	}
	// Phase one selects the ids in order (narrow rows to sort); Search
	// then fetches the rows of the page.
	drive := -1
	if unparsed {
		b.w("SELECT COUNT(*) FROM pubsub_items i")
	} else {
		drive = drivingFilter(q, indexed)
		b.w("SELECT i.id FROM ")
		if drive >= 0 {
			if err := b.drivingTable(q.Filters[drive]); err != nil {
				return "", nil, false, invalid(fmt.Errorf("filter %s: %w", q.Filters[drive], err))
			}
		} else {
			b.w("pubsub_items i")
		}
	}
	if len(q.Profiles)+len(q.Services)+len(q.Nodes)+len(q.Types)+len(q.Subtypes) > 0 {
		b.w(" JOIN pubsub_nodes n ON n.id = i.node_id")
		if len(q.Profiles) > 0 {
			b.w(" JOIN profiles p ON p.id = n.profile_id")
		}
	}
	if q.FTS != "" {
		if b.pg {
			b.w(" JOIN (SELECT fs.item_id, -ts_rank(fs.tsv, fq.q) AS rank FROM pubsub_items_search fs, (SELECT ")
			fts.tsquery(b)
			b.w(" AS q) fq WHERE fs.tsv @@ fq.q) f ON f.item_id = i.id")
		} else {
			b.w(" JOIN (SELECT rowid AS item_id, rank FROM pubsub_items_fts WHERE pubsub_items_fts MATCH ")
			b.arg(fts.fts5())
			b.w(") f ON f.item_id = i.id")
		}
	}
	orderCols := make([]cols, len(q.OrderBy))
	for k, o := range q.OrderBy {
		if o.Keyword != "" || unparsed {
			continue
		}
		c, err := b.orderCols(b, o.Path, indexed[o.Path.String()])
		if err != nil {
			return "", nil, false, invalid(fmt.Errorf("order by %s: %w", o.Path, err))
		}
		orderCols[k] = c
	}
	b.w(" WHERE 1 = 1")
	b.nodeFilters(q)
	b.in("i.item_id", q.ItemIDs, false)
	if unparsed {
		// Two ranges rather than <> so that the parse_state index
		// serves the count (almost every item is parsed).
		b.w(" AND (i.parse_state < 'ok' OR i.parse_state > 'ok')")
		return b.sb.String(), b.args, b.fold, nil
	}
	if len(q.Filters) > 0 && drive < 0 {
		// A filter on a parsed path never matches an item without parsed
		// data, positive or negated. (A driving side-table filter reads
		// rows that exist only for parsed items.)
		b.w(" AND i.parse_state = 'ok'")
	}
	for k, f := range q.Filters {
		if k == drive {
			continue
		}
		b.w(" AND ")
		if s.auto != nil && !indexed[f.Path.String()] {
			s.auto.prefilter(b, f)
		}
		if err := b.filter(f, indexed[f.Path.String()]); err != nil {
			return "", nil, false, invalid(fmt.Errorf("filter %s: %w", f, err))
		}
	}
	b.w(" ORDER BY ")
	for k, o := range q.OrderBy {
		dir := " ASC"
		if o.Desc {
			dir = " DESC"
		}
		switch o.Keyword {
		case OrderCreation:
			b.w("i.created_at", dir)
		case OrderModification:
			b.w("i.updated_at", dir)
		case OrderItemID:
			if b.pg {
				b.w(`i.item_id COLLATE "C"`, dir)
			} else {
				b.w("i.item_id", dir)
			}
		case OrderRank:
			b.w("f.rank", dir)
		default:
			b.orderBy(orderCols[k], dir)
		}
		b.w(", ")
	}
	if len(q.OrderBy) == 0 {
		b.w("i.created_at ASC, ")
	}
	b.w("i.id ASC")
	switch {
	case q.Limit > 0:
		b.w(" LIMIT ")
		b.arg(q.Limit)
	case q.Offset > 0 && !b.pg:
		b.w(" LIMIT -1")
	}
	if q.Offset > 0 {
		b.w(" OFFSET ")
		b.arg(q.Offset)
	}
	return b.sb.String(), b.args, b.fold, nil
}

// drivingFilter returns the index of a positive filter on an indexed path
// from whose side-table rows the query can start, when nothing else of the
// query reads pubsub_items (no node, item id or full-text filter, no
// unindexed path, ordered by indexed paths only), or -1.
func drivingFilter(q Query, indexed map[string]bool) int {
	if len(q.Profiles)+len(q.Services)+len(q.Nodes)+len(q.Types)+len(q.Subtypes)+len(q.ItemIDs) > 0 || q.FTS != "" || len(q.OrderBy) == 0 {
		return -1
	}
	for _, o := range q.OrderBy {
		if o.Keyword != "" || !indexed[o.Path.String()] {
			return -1
		}
	}
	drive := -1
	for k, f := range q.Filters {
		if !indexed[f.Path.String()] {
			return -1
		}
		if _, negated := f.Op.positive(); !negated && drive < 0 {
			drive = k
		}
	}
	return drive
}

// Result is what a search found.
type Result struct {
	Rows []Row
	// SkippedUnparsed is how many items a filter on a parsed path left out
	// because they have no parsed data (parse pending, no parser, parse
	// error), everything else of the query matching them.
	SkippedUnparsed int
	// IncompleteNodes are the searched nodes that are not complete: being
	// synced, partial, failed, or interrupted (their results may miss
	// items; a node that was never synced and holds nothing is not
	// searched).
	IncompleteNodes []NodeState
}

// NodeState is a node and its sync state.
type NodeState struct {
	Profile, Service, Node, State string
}

// Search runs q and returns the items found, with what the answer may
// miss.
func (s *Searcher) Search(ctx context.Context, q Query) (Result, error) {
	query, args, fold, err := s.Build(q)
	if err != nil {
		return Result{}, err
	}
	if len(q.Profiles) > 0 {
		known, err := s.store.Client.Profile.Query().Where(profile.NameIn(q.Profiles...)).Select(profile.FieldName).Strings(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("look up profiles: %w", err)
		}
		for _, p := range q.Profiles {
			found := false
			for _, k := range known {
				found = found || k == p
			}
			if !found {
				return Result{}, fmt.Errorf("%w %q", ErrUnknownProfile, p)
			}
		}
	}
	conn, err := s.store.DB.Conn(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("search: %w", err)
	}
	defer conn.Close()
	if fold {
		if err := registerFold(conn); err != nil {
			return Result{}, err
		}
	}
	ids, err := queryIDs(ctx, conn, query, args)
	if err != nil {
		return Result{}, err
	}
	var res Result
	if res.Rows, err = s.fetch(ctx, conn, ids, q.WithPayload); err != nil {
		return Result{}, err
	}
	if len(q.Filters) > 0 {
		query, args, _, err := s.build(q, true)
		if err != nil {
			return Result{}, err
		}
		if err := conn.QueryRowContext(ctx, query, args...).Scan(&res.SkippedUnparsed); err != nil {
			return Result{}, fmt.Errorf("search: count unparsed items: %w", err)
		}
	}
	if res.IncompleteNodes, err = s.incomplete(ctx, conn, q); err != nil {
		return Result{}, err
	}
	return res, nil
}

// incomplete lists the nodes in q's scope that hold (or are storing)
// items but are not complete, or whose sync was interrupted (the cache
// records "interrupted: …" as their last error until they are synced).
func (s *Searcher) incomplete(ctx context.Context, conn *sql.Conn, q Query) ([]NodeState, error) {
	b := &builder{pg: s.store.Dialect == storage.DriverPostgres}
	b.w("SELECT p.name, n.service, n.name, n.sync_state FROM pubsub_nodes n JOIN profiles p ON p.id = n.profile_id",
		" WHERE (n.sync_state IN ('in_progress', 'partial', 'error')",
		" OR n.sync_state = 'never' AND (EXISTS (SELECT 1 FROM pubsub_items i WHERE i.node_id = n.id) OR n.last_error LIKE 'interrupted:%'))")
	b.nodeFilters(q)
	b.w(" ORDER BY p.name, n.service, n.name")
	rows, err := conn.QueryContext(ctx, b.sb.String(), b.args...)
	if err != nil {
		return nil, fmt.Errorf("search: list incomplete nodes: %w", err)
	}
	defer rows.Close()
	out := []NodeState{}
	for rows.Next() {
		var n NodeState
		if err := rows.Scan(&n.Profile, &n.Service, &n.Node, &n.State); err != nil {
			return nil, fmt.Errorf("search: list incomplete nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func queryIDs(ctx context.Context, conn *sql.Conn, query string, args []any) ([]int64, error) {
	rows, err := conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("search: read row: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return ids, nil
}

// fetchBatch bounds the ids fetched per statement.
const fetchBatch = 500

// fetch reads the rows of ids, in that order.
func (s *Searcher) fetch(ctx context.Context, conn *sql.Conn, ids []int64, withPayload bool) ([]Row, error) {
	out := make([]Row, 0, len(ids))
	for lo := 0; lo < len(ids); lo += fetchBatch {
		chunk := ids[lo:min(lo+fetchBatch, len(ids))]
		b := &builder{pg: s.store.Dialect == storage.DriverPostgres}
		b.w("SELECT i.id, p.name, n.service, n.name, i.item_id, i.parsed")
		// On SQLite a packed parsed document needs its payload to unpack.
		needPayload := withPayload || !b.pg
		if needPayload {
			b.w(", i.publisher, i.payload")
		}
		b.w(" FROM pubsub_items i JOIN pubsub_nodes n ON n.id = i.node_id JOIN profiles p ON p.id = n.profile_id WHERE i.id IN (")
		for k, id := range chunk {
			if k > 0 {
				b.w(", ")
			}
			b.arg(id)
		}
		b.w(")")
		rows, err := conn.QueryContext(ctx, b.sb.String(), b.args...)
		if err != nil {
			return nil, fmt.Errorf("search: fetch items: %w", err)
		}
		byID := make(map[int64]Row, len(chunk))
		for rows.Next() {
			var r Row
			var id int64
			var parsed []byte
			var publisher sql.NullString
			dest := []any{&id, &r.Profile, &r.Service, &r.Node, &r.ItemID, &parsed}
			if needPayload {
				dest = append(dest, &publisher, &r.Payload)
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("search: read row: %w", err)
			}
			r.Publisher = publisher.String
			if needPayload {
				if r.Payload, err = payloadcodec.Unpack(r.Payload); err != nil {
					rows.Close()
					return nil, fmt.Errorf("search: read item %s: %w", r.ItemID, err)
				}
			}
			if parsed, err = payloadcodec.UnpackParsed(parsed, r.Payload); err != nil {
				rows.Close()
				return nil, fmt.Errorf("search: read item %s: %w", r.ItemID, err)
			}
			if !withPayload {
				r.Payload, r.Publisher = nil, ""
			}
			if len(parsed) > 0 {
				var buf bytes.Buffer
				if err := json.Compact(&buf, parsed); err != nil {
					rows.Close()
					return nil, fmt.Errorf("search: item %s: parsed JSON: %w", r.ItemID, err)
				}
				if buf.String() != "null" {
					r.Parsed = buf.Bytes()
				}
			}
			byID[id] = r
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("search: fetch items: %w", err)
		}
		for _, id := range chunk {
			// An item deleted between the two statements is left out.
			if r, ok := byID[id]; ok {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// registerFold installs search_fold (Fold) on an SQLite connection.
func registerFold(conn *sql.Conn) error {
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		return c.RegisterFunc("search_fold", sqliteFold, true)
	})
	if err != nil {
		return fmt.Errorf("search: register search_fold: %w", err)
	}
	return nil
}

// sqliteFold is search_fold: Fold for text, NULL for anything else.
func sqliteFold(v any) any {
	switch x := v.(type) {
	case string:
		return Fold(x)
	case []byte:
		return Fold(string(x))
	}
	return nil
}

// nodeFilters writes q's conditions on nodes (n, and p for profiles).
func (b *builder) nodeFilters(q Query) {
	b.in("p.name", q.Profiles, false)
	b.in("n.service", q.Services, false)
	b.in("n.name", q.Nodes, false)
	b.in("n.type", q.Types, true)
	b.in("n.subtype", q.Subtypes, true)
}

// in writes " AND col IN (vals)" (nothing for no vals); with nullable, an
// empty value also matches NULL.
func (b *builder) in(col string, vals []string, nullable bool) {
	if len(vals) == 0 {
		return
	}
	b.w(" AND (", col, " IN (")
	hasEmpty := false
	for k, v := range vals {
		if k > 0 {
			b.w(", ")
		}
		b.arg(v)
		hasEmpty = hasEmpty || v == ""
	}
	b.w(")")
	if nullable && hasEmpty {
		b.w(" OR ", col, " IS NULL")
	}
	b.w(")")
}
