package search

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"example.org/backend/core/storage"
)

// Adaptive expression indexes (package documentation, "Indexes").
const (
	// MaxAutoIndexes caps the expression indexes AutoIndex creates per
	// database (counting both kinds on PostgreSQL).
	MaxAutoIndexes = 16
	// AutoIndexPrefixChars is how many characters of a string value an
	// expression index holds: it bounds an index entry (a long text path
	// costs what a short one does); comparisons on longer strings are
	// narrowed by their prefix and rechecked on the item.
	AutoIndexPrefixChars = 64
	// autoIndexPrefix starts the name of every expression index AutoIndex
	// creates (the catalog is read by this prefix).
	autoIndexPrefix = "pubsub_items_px_"
	// autoRetryAfter is how long a failed build waits before a search may
	// ask for it again.
	autoRetryAfter = 10 * time.Minute
)

// autoKind is what an expression index holds: on SQLite one index holds
// the strings (their prefix) and the numbers of a path; on PostgreSQL
// strings and numbers have an index each.
type autoKind byte

const (
	autoSQLite autoKind = 'w'
	autoPGText autoKind = 's'
	autoPGNum  autoKind = 'n'
	// autoSQLiteRaw is the SQLite kind of before parsed JSON was stored
	// packed: its expression reads the column as JSON text, which a packed
	// value is not (every write would fail), so its indexes are dropped
	// at start and built again as autoSQLite.
	autoSQLiteRaw autoKind = 'v'
)

// autoKey names one expression index: a canonical path and a kind.
type autoKey struct {
	path string
	kind autoKind
}

// autoEntry is the state of one expression index.
type autoEntry struct {
	ready    bool          // the index exists and is valid
	failedAt time.Time     // last failed build (zero: none)
	done     chan struct{} // closed when the pending build ends
}

// AutoIndex creates expression indexes on pubsub_items for the parsed
// paths that searches filter on without a declared (side-table) index,
// and tells the query builder which exist. It owns the set of indexes
// (entries, guarded by mu; no I/O under it) and one builder goroutine
// that creates them one at a time (reqs). The set is read at start from
// the catalog (sqlite_schema, pg_index) by name, so no table records it:
// an index lost to a table rebuild is asked for again after a restart.
type AutoIndex struct {
	store *storage.Store
	log   *slog.Logger
	pg    bool
	reqs  chan autoKey
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu      sync.Mutex
	known   map[string]bool // index names found in the catalog at start
	entries map[autoKey]*autoEntry
	count   int // ready or pending entries (the cap's count)
}

// NewAutoIndex reads the expression indexes of store's database and
// starts the goroutine that creates the missing ones; Close stops it. On
// PostgreSQL invalid indexes (left by a failed concurrent build) are
// dropped and may be built again.
func NewAutoIndex(ctx context.Context, store *storage.Store, log *slog.Logger) (*AutoIndex, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &AutoIndex{store: store, log: log, pg: store.Dialect == storage.DriverPostgres,
		reqs: make(chan autoKey, MaxAutoIndexes), entries: map[autoKey]*autoEntry{}}
	names, invalid, err := a.catalog(ctx)
	if err != nil {
		return nil, err
	}
	a.known = names
	for _, name := range invalid {
		drop := `DROP INDEX CONCURRENTLY IF EXISTS `
		if !a.pg {
			drop = `DROP INDEX IF EXISTS `
		}
		if err := a.exec(ctx, drop+name); err != nil {
			return nil, fmt.Errorf("drop invalid expression index %s: %w", name, err)
		}
		log.Info("dropped an invalid search expression index", "index", name)
	}
	a.count = len(names)
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = cancel
	a.wg.Add(1)
	go a.loop(loopCtx)
	return a, nil
}

// DropStaleAutoIndexes drops the SQLite expression indexes of the kind
// written before parsed JSON was stored packed (autoSQLiteRaw): their
// expression reads the column as JSON text, so writing a packed document
// would fail while one exists. The cache calls it before it writes
// anything; NewAutoIndex drops them too. Nothing to do on PostgreSQL.
func DropStaleAutoIndexes(ctx context.Context, store *storage.Store) error {
	if store.Dialect == storage.DriverPostgres {
		return nil
	}
	rows, err := store.DB.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'pubsub_items' AND substr(name, 1, 18) = ?`,
		autoIndexPrefix+string(autoSQLiteRaw)+"_")
	if err != nil {
		return fmt.Errorf("read expression indexes: %w", err)
	}
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("read expression indexes: %w", err)
		}
		names = append(names, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read expression indexes: %w", err)
	}
	for _, name := range names {
		if _, err := store.DB.ExecContext(ctx, `DROP INDEX IF EXISTS `+name); err != nil {
			return fmt.Errorf("drop expression index %s: %w", name, err)
		}
	}
	return nil
}

// Close stops the builder (a build under way is cancelled) and waits.
func (a *AutoIndex) Close() {
	a.stop()
	a.wg.Wait()
}

// catalog returns the names of the valid and of the invalid expression
// indexes of pubsub_items.
func (a *AutoIndex) catalog(ctx context.Context) (map[string]bool, []string, error) {
	q := `SELECT name, 1 FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'pubsub_items' AND substr(name, 1, 16) = '` + autoIndexPrefix + `'`
	if a.pg {
		q = `SELECT c.relname, i.indisvalid::int FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = 'pubsub_items'::regclass AND substr(c.relname, 1, 16) = '` + autoIndexPrefix + `'`
	}
	rows, err := a.store.DB.QueryContext(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("read expression indexes: %w", err)
	}
	defer rows.Close()
	valid := map[string]bool{}
	var invalid []string
	for rows.Next() {
		var name string
		var ok int
		if err := rows.Scan(&name, &ok); err != nil {
			return nil, nil, fmt.Errorf("read expression indexes: %w", err)
		}
		if !a.pg && strings.HasPrefix(name, autoIndexPrefix+string(autoSQLiteRaw)+"_") {
			ok = 0
		}
		if ok == 1 {
			valid[name] = true
		} else {
			invalid = append(invalid, name)
		}
	}
	return valid, invalid, rows.Err()
}

// ready reports whether the index of k exists; when it does not, it asks
// for it (once, within the cap; not again soon after a failure).
func (a *AutoIndex) ready(k autoKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entries[k]
	if e == nil {
		if a.known[autoIndexName(k)] {
			e = &autoEntry{ready: true, done: closed()}
			a.entries[k] = e
			return true
		}
		e = &autoEntry{}
		a.entries[k] = e
	}
	if e.ready {
		return true
	}
	if e.done != nil || a.count >= MaxAutoIndexes || (!e.failedAt.IsZero() && time.Since(e.failedAt) < autoRetryAfter) {
		return false
	}
	e.done = make(chan struct{})
	a.count++
	select {
	case a.reqs <- k:
	default: // cannot happen: at most MaxAutoIndexes pending
		close(e.done)
		e.done = nil
		a.count--
	}
	return false
}

// Settled returns a channel closed when the index of the canonical path p
// (kind: "" on SQLite, "text" or "number" on PostgreSQL) exists or its
// build failed; nil when nobody asked for it.
func (a *AutoIndex) Settled(p Path, kind string) <-chan struct{} {
	k := autoKey{path: p.String(), kind: autoSQLite}
	if a.pg {
		k.kind = autoPGText
		if kind == "number" {
			k.kind = autoPGNum
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.entries[k]; e != nil && e.done != nil {
		return e.done
	}
	return nil
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// loop builds the asked indexes one at a time.
func (a *AutoIndex) loop(ctx context.Context) {
	defer a.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-a.reqs:
			err := a.build(ctx, k)
			a.mu.Lock()
			e := a.entries[k]
			if err == nil {
				e.ready = true
			} else {
				e.failedAt = time.Now()
				a.count--
			}
			close(e.done)
			if err != nil {
				e.done = nil
			}
			a.mu.Unlock()
		}
	}
}

// build creates the index of k. On SQLite CREATE INDEX holds the write
// lock while it reads every item (about 20 ms per 5 000 items; writers
// wait up to the busy timeout); on PostgreSQL CREATE INDEX CONCURRENTLY
// lets writes go on, and a failed build's invalid index is dropped.
func (a *AutoIndex) build(ctx context.Context, k autoKey) error {
	name := autoIndexName(k)
	expr, err := autoIndexExpr(k, "")
	if err != nil {
		a.log.Warn("search expression index not created", "path", k.path, "err", err)
		return err
	}
	start := time.Now()
	stmt := "CREATE INDEX IF NOT EXISTS " + name + " ON pubsub_items (" + expr + ")"
	if a.pg {
		stmt = "CREATE INDEX CONCURRENTLY IF NOT EXISTS " + name + " ON pubsub_items ((" + expr + "))"
	}
	if err := a.exec(ctx, stmt); err != nil {
		if a.pg {
			if derr := a.exec(context.WithoutCancel(ctx), "DROP INDEX CONCURRENTLY IF EXISTS "+name); derr != nil {
				a.log.Warn("dropping a failed search expression index failed", "index", name, "err", derr)
			}
		}
		if ctx.Err() == nil {
			a.log.Warn("creating a search expression index failed; the path is searched by scanning", "path", k.path, "index", name, "err", err)
		}
		return fmt.Errorf("create expression index %s on %s: %w", name, k.path, err)
	}
	if a.pg {
		// CONCURRENTLY with IF NOT EXISTS may meet an invalid leftover.
		_, invalid, err := a.catalog(ctx)
		if err != nil {
			return err
		}
		for _, n := range invalid {
			if n == name {
				_ = a.exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+name)
				return fmt.Errorf("expression index %s is invalid", name)
			}
		}
	}
	a.log.Info("search expression index created", "path", k.path, "index", name, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// exec runs one statement on its own connection, outside a transaction.
func (a *AutoIndex) exec(ctx context.Context, stmt string) error {
	conn, err := a.store.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.ExecContext(ctx, stmt)
	return err
}

// autoIndexName is the index name of k: the prefix, the kind and a hash of
// the path (names stay short and free of user text).
func autoIndexName(k autoKey) string {
	h := sha256.Sum256([]byte(k.path))
	return autoIndexPrefix + string(k.kind) + "_" + hex.EncodeToString(h[:8])
}

// sqlLiteral quotes s as an SQL string literal, refusing what a path
// literal never needs (NUL and other control characters, invalid UTF-8).
func sqlLiteral(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("path is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("path holds control character %U", r)
		}
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}

// pgArrayPath returns p as a PostgreSQL text[] literal ({"a","0"}) for #>
// and #>>, an index step being its decimal text.
func pgArrayPath(p Path) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, st := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		if st.IsIndex {
			b.WriteString(strconv.Itoa(st.Index))
			continue
		}
		if strings.ContainsAny(st.Key, "\"\\") {
			return "", fmt.Errorf("path %s: key holds '\"' or '\\'", p)
		}
		b.WriteByte('"')
		b.WriteString(st.Key)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// autoIndexExpr returns the indexed expression of k over the column
// qual+"parsed" (qual "" in CREATE INDEX, "i." in searches: the planners
// match the two only when they are written alike). The path is an SQL
// literal built from the canonical path, never from user text.
//
// SQLite: the first AutoIndexPrefixChars characters of a string, a number
// as is, NULL otherwise (booleans, arrays, objects, missing). PostgreSQL
// text: the prefix of a string under the "C" collation (byte order, as
// the search compares strings), NULL otherwise; number: the exact numeric
// value of a number, NULL otherwise (no cast can fail on any item).
func autoIndexExpr(k autoKey, qual string) (string, error) {
	p, err := ParsePath(k.path)
	if err != nil {
		return "", err
	}
	col := qual + "parsed"
	n := strconv.Itoa(AutoIndexPrefixChars)
	switch k.kind {
	case autoSQLite:
		col = sqliteDocOf(qual)
		jp, err := p.sqlitePath()
		if err != nil {
			return "", err
		}
		lit, err := sqlLiteral(jp)
		if err != nil {
			return "", err
		}
		x := "json_extract(" + col + ", " + lit + ")"
		return "CASE json_type(" + col + ", " + lit + ") WHEN 'text' THEN substr(" + x + ", 1, " + n + ") WHEN 'integer' THEN " + x + " WHEN 'real' THEN " + x + " END", nil
	case autoPGText, autoPGNum:
		ap, err := pgArrayPath(p)
		if err != nil {
			return "", err
		}
		lit, err := sqlLiteral(ap)
		if err != nil {
			return "", err
		}
		if k.kind == autoPGText {
			return "(CASE WHEN jsonb_typeof(" + col + " #> " + lit + ") = 'string' THEN substr(" + col + " #>> " + lit + ", 1, " + n + `) END) COLLATE "C"`, nil
		}
		return "CASE WHEN jsonb_typeof(" + col + " #> " + lit + ") = 'number' THEN (" + col + " #> " + lit + ")::numeric END", nil
	}
	return "", fmt.Errorf("expression index kind %q", k.kind)
}

// autoCond is one sargable condition of a prefilter: an expression index
// (kind) compared with bound values.
type autoCond struct {
	kind autoKind
	// terms are ANDed "expr OP ?" terms.
	terms []autoTerm
}

type autoTerm struct {
	op  string // =, <, <=, >, >=, IN
	val []any  // one value, several for IN
}

// prefilterConds returns the disjunction of conditions that every item
// matching f satisfies, on indexed expressions (nil when f has none: a
// negated, members, case-folded, boolean, array or object filter).
func prefilterConds(f Filter, pg bool) []autoCond {
	op, negated := f.Op.positive()
	if negated {
		return nil
	}
	str := func(terms ...autoTerm) autoCond {
		if pg {
			return autoCond{kind: autoPGText, terms: terms}
		}
		return autoCond{kind: autoSQLite, terms: terms}
	}
	num := func(terms ...autoTerm) autoCond {
		if pg {
			return autoCond{kind: autoPGNum, terms: terms}
		}
		return autoCond{kind: autoSQLite, terms: terms}
	}
	t := func(op string, v any) autoTerm { return autoTerm{op: op, val: []any{v}} }
	// lower and upper bound a string or number by op.
	bound := func(op string, v any) (autoCond, bool) {
		switch x := v.(type) {
		case string:
			switch op {
			case ">", ">=":
				// The prefix of a greater string is not smaller.
				return str(t(">=", truncChars(x))), true
			case "<", "<=":
				// "" as lower bound keeps the numbers out on SQLite
				// (numbers sort before strings).
				return str(t(">=", ""), t("<=", truncChars(x))), true
			}
		case float64:
			if pg {
				switch op {
				case ">", ">=":
					return num(t(">", pgNumBound(math.Nextafter(x, math.Inf(-1))))), true
				case "<", "<=":
					return num(t("<", pgNumBound(math.Nextafter(x, math.Inf(1))))), true
				}
			}
			switch op {
			case ">", ">=":
				// "" as upper bound keeps the strings out.
				return num(t(op, x), t("<", "")), true
			case "<", "<=":
				return num(t(op, x)), true
			}
		}
		return autoCond{}, false
	}
	and := func(a, b autoCond) autoCond { return autoCond{kind: a.kind, terms: append(a.terms, b.terms...)} }
	eq := func(v any) (autoCond, bool) {
		switch x := v.(type) {
		case string:
			return str(t("=", truncChars(x))), true
		case float64:
			if pg {
				lo, _ := bound(">=", x)
				hi, _ := bound("<=", x)
				return and(lo, hi), true
			}
			return num(t("=", x)), true
		}
		return autoCond{}, false
	}
	switch op {
	case OpEq:
		if c, ok := eq(f.Value); ok {
			return []autoCond{c}
		}
	case OpLt, OpLe, OpGt, OpGe:
		if c, ok := bound(string(op), f.Value); ok {
			return []autoCond{c}
		}
	case OpBetween:
		a := f.Value.([]any)
		lo, ok1 := bound(">=", a[0])
		hi, ok2 := bound("<=", a[1])
		if ok1 && ok2 && lo.kind == hi.kind {
			return []autoCond{and(lo, hi)}
		}
	case OpIn:
		var out []autoCond
		var strs, nums []any
		for _, v := range asList(f.Value) {
			switch x := v.(type) {
			case string:
				strs = append(strs, truncChars(x))
			case float64:
				if pg {
					c, _ := eq(x)
					out = append(out, c)
				} else {
					nums = append(nums, x)
				}
			default:
				return nil // booleans are not indexed
			}
		}
		if !pg {
			return []autoCond{str(autoTerm{op: "IN", val: append(strs, nums...)})}
		}
		if len(strs) > 0 {
			out = append(out, str(autoTerm{op: "IN", val: strs}))
		}
		return out
	case OpLike:
		pat, err := parsePattern(f.Value.(string))
		if err != nil {
			return nil
		}
		pre := pat.prefix()
		if pre == "" {
			return nil
		}
		c := str(t(">=", truncChars(pre)))
		if succ, ok := runeSuccessor(truncChars(pre)); ok {
			c.terms = append(c.terms, t("<", succ))
		}
		return []autoCond{c}
	}
	return nil
}

// truncChars returns the first AutoIndexPrefixChars characters of s (as
// substr does on both engines).
func truncChars(s string) string {
	n := 0
	for i := range s {
		if n == AutoIndexPrefixChars {
			return s[:i]
		}
		n++
	}
	return s
}

// runeSuccessor returns the smallest valid UTF-8 string greater than every
// string starting with prefix in code point (byte) order: the prefix with
// its last incrementable character incremented; false when none.
func runeSuccessor(prefix string) (string, bool) {
	rs := []rune(prefix)
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i] + 1
		if r == 0xD800 {
			r = 0xE000
		}
		if r <= utf8.MaxRune {
			rs[i] = r
			return string(rs[:i+1]), true
		}
	}
	return "", false
}

// pgNumBound is x as a numeric literal for a widened bound: the shortest
// decimal that reads back as x lies strictly between x's neighbours' and
// x's rounding intervals, so a number rounding to a value beyond it (as
// float8, what the search compares) lies beyond it too.
func pgNumBound(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// prefilter writes, for a filter on a path without a side-table index, a
// sargable condition on expression indexes followed by " AND " when every
// index it needs exists; otherwise it asks for the missing indexes and
// writes nothing (the search scans, as without AutoIndex).
func (a *AutoIndex) prefilter(b *builder, f Filter) {
	conds := prefilterConds(f, b.pg)
	if len(conds) == 0 {
		return
	}
	path := f.Path.String()
	exprs := make([]string, len(conds))
	ok := true
	for k, c := range conds {
		key := autoKey{path: path, kind: c.kind}
		expr, err := autoIndexExpr(key, "i.")
		if err != nil {
			return // a path the engine's path syntax cannot write
		}
		exprs[k] = expr
		if !a.ready(key) {
			ok = false
		}
	}
	if !ok {
		return
	}
	b.w("(")
	for k, c := range conds {
		if k > 0 {
			b.w(" OR ")
		}
		b.w("(")
		for j, t := range c.terms {
			if j > 0 {
				b.w(" AND ")
			}
			b.w("(", exprs[k], ") ", t.op, " ")
			if t.op == "IN" {
				b.w("(")
			}
			for n, v := range t.val {
				if n > 0 {
					b.w(", ")
				}
				b.arg(v)
				if c.kind == autoPGNum {
					b.w("::numeric")
				}
			}
			if t.op == "IN" {
				b.w(")")
			}
		}
		b.w(")")
	}
	b.w(") AND ")
}
