package search

import (
	"fmt"
	"strconv"
	"strings"
)

// builder accumulates SQL text and its bound arguments. User input only
// ever reaches the SQL as arguments; the text holds fixed fragments,
// table aliases and operator keywords chosen by this package.
type builder struct {
	pg   bool
	sb   strings.Builder
	args []any
	// fold is set when the query calls search_fold (SQLite, unindexed
	// case-insensitive filters): the connection must register it.
	fold bool
	// aliases counts subquery aliases.
	aliases int
}

func (b *builder) w(s ...string) {
	for _, x := range s {
		b.sb.WriteString(x)
	}
}

func (b *builder) arg(v any) {
	b.args = append(b.args, v)
	if b.pg {
		b.sb.WriteString("$" + strconv.Itoa(len(b.args)))
	} else {
		b.sb.WriteByte('?')
	}
}

func (b *builder) alias(prefix string) string {
	b.aliases++
	return prefix + strconv.Itoa(b.aliases)
}

// cols writes the four columns of a value source: its kind (s, n, b, a,
// o, or NULL when missing or null), its text as bytes, its folded text as
// bytes, and its number; jsonEq writes the whole-value equality with an
// array or object.
type cols struct {
	kind, text, fold, num func(b *builder)
	jsonEq                func(b *builder, v any)
}

// indexedCols are the columns of a pubsub_item_values row.
func indexedCols(a string) cols {
	return cols{
		kind: func(b *builder) { b.w(a, ".kind") },
		text: func(b *builder) { b.w(a, ".value_text") },
		fold: func(b *builder) { b.w(a, ".value_fold") },
		num:  func(b *builder) { b.w(a, ".value_num") },
		jsonEq: func(b *builder, v any) {
			b.w(a, ".value_text = ")
			b.arg([]byte(canonicalJSON(v)))
		},
	}
}

// sqliteKind maps a json_type()/json_each type to a kind.
const sqliteKindCase = " WHEN 'text' THEN 's' WHEN 'integer' THEN 'n' WHEN 'real' THEN 'n' WHEN 'true' THEN 'b' WHEN 'false' THEN 'b' WHEN 'array' THEN 'a' WHEN 'object' THEN 'o' END"

// sqliteDoc is the parsed JSON of the item aliased i on SQLite, where the
// column holds the stored form of payloadcodec.PackParsed: search_parsed
// (parsedfunc.go: registered on every SQLite connection) unpacks it.
var sqliteDoc = sqliteDocOf("i.")

// sqliteDocOf is the parsed JSON of the row qualified by qual ("" in
// CREATE INDEX: the planner matches an expression index only when the
// search writes the expression alike).
func sqliteDocOf(qual string) string {
	return "search_parsed(" + qual + "parsed, " + qual + "payload)"
}

// sqliteWholeCols computes the columns of the value at jp (an SQLite JSON
// path) of the item's parsed JSON.
func sqliteWholeCols(jp string) cols {
	return cols{
		kind: func(b *builder) {
			b.w("CASE json_type(", sqliteDoc, ", ")
			b.arg(jp)
			b.w(")", sqliteKindCase)
		},
		text: func(b *builder) {
			b.w("CAST(CASE json_type(", sqliteDoc, ", ")
			b.arg(jp)
			b.w(") WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_extract(", sqliteDoc, ", ")
			b.arg(jp)
			b.w(") END AS BLOB)")
		},
		fold: func(b *builder) {
			b.fold = true
			b.w("CAST(search_fold(json_extract(", sqliteDoc, ", ")
			b.arg(jp)
			b.w(")) AS BLOB)")
		},
		num: func(b *builder) {
			b.w("json_extract(", sqliteDoc, ", ")
			b.arg(jp)
			b.w(")")
		},
		jsonEq: func(b *builder, v any) {
			b.w("json_extract(", sqliteDoc, ", ")
			b.arg(jp)
			b.w(") = ")
			b.arg(canonicalJSON(v))
		},
	}
}

// sqliteEachCols are the columns of a json_each row aliased e.
func sqliteEachCols(e string) cols {
	return cols{
		kind: func(b *builder) { b.w("CASE ", e, ".type", sqliteKindCase) },
		text: func(b *builder) {
			b.w("CAST(CASE ", e, ".type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE ", e, ".value END AS BLOB)")
		},
		fold: func(b *builder) {
			b.fold = true
			b.w("CAST(search_fold(", e, ".value) AS BLOB)")
		},
		num: func(b *builder) { b.w(e, ".value") },
	}
}

// pgCols are the columns of a jsonb expression x (NULL when missing).
func pgCols(x string) cols {
	return cols{
		kind: func(b *builder) {
			b.w("CASE jsonb_typeof(", x, ") WHEN 'string' THEN 's' WHEN 'number' THEN 'n' WHEN 'boolean' THEN 'b' WHEN 'array' THEN 'a' WHEN 'object' THEN 'o' END")
		},
		text: func(b *builder) { b.w("convert_to(", x, " #>> '{}', 'UTF8')") },
		fold: func(b *builder) {
			b.w("convert_to(lower(upper((", x, ` #>> '{}') COLLATE "und-x-icu")), 'UTF8')`)
		},
		num: func(b *builder) {
			b.w("CASE WHEN jsonb_typeof(", x, ") = 'number' THEN (", x, " #>> '{}')::float8 END")
		},
		jsonEq: func(b *builder, v any) {
			b.w(x, " = ")
			b.arg(canonicalJSON(v))
			b.w("::jsonb")
		},
	}
}

// pgValue writes the jsonb value at p of the item's parsed JSON.
func pgValue(b *builder, jp string) {
	b.w("jsonb_path_query_first(i.parsed, ")
	b.arg(jp)
	b.w("::jsonpath, '{}'::jsonb, true)")
}

// filter writes the condition of f on the item aliased i.
func (b *builder) filter(f Filter, indexed bool) error {
	op, negated := f.Op.positive()
	members := op == OpOverlap || op == OpIOverlap
	if indexed {
		v := b.alias("v")
		roles := "(1, 2)"
		if members {
			roles = "(1, 3)"
		}
		if negated {
			b.w("NOT EXISTS (SELECT 1 FROM pubsub_item_values ", v, " WHERE ", v, ".item_id = i.id AND ")
			if err := b.indexedCond(v, f, op, roles); err != nil {
				return err
			}
			b.w(")")
			return nil
		}
		b.w("i.id IN (SELECT ", v, ".item_id FROM pubsub_item_values ", v, " WHERE ")
		if !foldOp(op) {
			if err := b.indexedBranch(v, f, op, roles, false); err != nil {
				return err
			}
			b.w(")")
			return nil
		}
		if err := b.foldUnion(v, f, op, roles, " UNION ALL "); err != nil {
			return err
		}
		b.w(")")
		return nil
	}
	if negated {
		b.w("NOT ")
	}
	if b.pg {
		jp, err := f.Path.pgPath()
		if err != nil {
			return err
		}
		s := b.alias("s")
		b.w("EXISTS (SELECT 1 FROM (SELECT ")
		pgValue(b, jp)
		b.w(" AS x) ", s)
		c := pgCols(s + ".x")
		if members {
			e := b.alias("e")
			b.w(", jsonb_array_elements(CASE jsonb_typeof(", s, ".x) WHEN 'array' THEN ", s, ".x WHEN 'object' THEN '[]'::jsonb ELSE jsonb_build_array(", s, ".x) END) AS ", e, "(x)")
			c = pgCols(e + ".x")
		}
		b.w(" WHERE ")
		if err := b.pred(c, op, f.Value); err != nil {
			return err
		}
		b.w(")")
		return nil
	}
	jp, err := f.Path.sqlitePath()
	if err != nil {
		return err
	}
	if members {
		e := b.alias("e")
		b.w("EXISTS (SELECT 1 FROM json_each(", sqliteDoc, ", ")
		b.arg(jp)
		b.w(") ", e, " WHERE json_type(", sqliteDoc, ", ")
		b.arg(jp)
		b.w(") <> 'object' AND ")
		if err := b.pred(sqliteEachCols(e), op, f.Value); err != nil {
			return err
		}
		b.w(")")
		return nil
	}
	b.w("EXISTS (SELECT 1 WHERE ")
	if err := b.pred(sqliteWholeCols(jp), op, f.Value); err != nil {
		return err
	}
	b.w(")")
	return nil
}

// foldOp reports whether the positive operator op compares folded text
// (ilike, ioverlap: its pred reads the fold column against a folded
// needle).
//
// On the side table value_fold is NULL when a string is its own fold, so
// such a filter is the union of two branches, each with the path equality
// so that each uses an index on its own: the folds that differ from their
// text (value_fold, partial index), and the text read as the fold (text
// index). The second branch needs no
// value_fold IS NULL guard, which the text index does not hold: Fold maps
// rune to rune and is idempotent (TestFoldIdempotent), so a text that
// equals or matches a folded needle has a fold that does too.
func foldOp(op Op) bool { return op == OpILike || op == OpIOverlap }

// indexedBranch writes the side-table condition of f (positive op) on the
// rows aliased v; with asText, the branch of a case-insensitive operator
// that reads value_text as the fold, otherwise the one reading value_fold.
func (b *builder) indexedBranch(v string, f Filter, op Op, roles string, asText bool) error {
	c := indexedCols(v)
	b.w("(", v, ".path = ")
	b.arg(f.Path.String())
	b.w(" AND ", v, ".role IN ", roles, " AND ")
	if foldOp(op) {
		if asText {
			c.fold = c.text
		} else {
			b.w(v, ".value_fold IS NOT NULL AND ")
		}
	}
	if err := b.pred(c, op, f.Value); err != nil {
		return err
	}
	b.w(")")
	return nil
}

// indexedCond writes the whole side-table condition of f (positive op) on
// the rows aliased v (for a negated filter, which reads an item's rows).
func (b *builder) indexedCond(v string, f Filter, op Op, roles string) error {
	if !foldOp(op) {
		return b.indexedBranch(v, f, op, roles, false)
	}
	b.w("(")
	if err := b.indexedBranch(v, f, op, roles, false); err != nil {
		return err
	}
	b.w(" OR ")
	if err := b.indexedBranch(v, f, op, roles, true); err != nil {
		return err
	}
	b.w(")")
	return nil
}

// foldUnion writes the two branches of a case-insensitive filter as a
// compound select of item ids (after "SELECT v.item_id FROM
// pubsub_item_values v WHERE ", written by the caller), so that each
// branch is planned alone, index-only on both engines (PostgreSQL plans an
// OR of the two as one scan of the path filtering the heap rows).
func (b *builder) foldUnion(v string, f Filter, op Op, roles, union string) error {
	if err := b.indexedBranch(v, f, op, roles, false); err != nil {
		return err
	}
	v2 := b.alias("v")
	b.w(union, "SELECT ", v2, ".item_id FROM pubsub_item_values ", v2, " WHERE ")
	return b.indexedBranch(v2, f, op, roles, true)
}

// drivingTable writes a derived table i(id) of the items matching the
// positive indexed filter f, for queries that need nothing else of
// pubsub_items before the fetch.
func (b *builder) drivingTable(f Filter) error {
	op, _ := f.Op.positive()
	roles := "(1, 2)"
	if op == OpOverlap || op == OpIOverlap {
		roles = "(1, 3)"
	}
	v := b.alias("v")
	if foldOp(op) {
		b.w("(SELECT ", v, ".item_id AS id FROM pubsub_item_values ", v, " WHERE ")
		if err := b.foldUnion(v, f, op, roles, " UNION "); err != nil {
			return err
		}
		b.w(") i")
		return nil
	}
	b.w("(SELECT DISTINCT ", v, ".item_id AS id FROM pubsub_item_values ", v, " WHERE ")
	if err := b.indexedBranch(v, f, op, roles, false); err != nil {
		return err
	}
	b.w(") i")
	return nil
}

// pred writes the positive operator op on value over the columns c.
func (b *builder) pred(c cols, op Op, value any) error {
	kindIs := func(k string) {
		c.kind(b)
		b.w(" = '", k, "'")
	}
	b.w("(")
	defer b.w(")")
	switch op {
	case OpEq:
		switch v := value.(type) {
		case string:
			kindIs("s")
			b.w(" AND ")
			c.text(b)
			b.w(" = ")
			b.arg([]byte(v))
		case float64:
			kindIs("n")
			b.w(" AND ")
			c.num(b)
			b.w(" = ")
			b.arg(v)
		case bool:
			kindIs("b")
			b.w(" AND ")
			c.text(b)
			b.w(" = ")
			b.arg([]byte(strconv.FormatBool(v)))
		case []any:
			kindIs("a")
			b.w(" AND ")
			c.jsonEq(b, v)
		case map[string]any:
			kindIs("o")
			b.w(" AND ")
			c.jsonEq(b, v)
		default:
			return fmt.Errorf("== on %T", value)
		}
	case OpLt, OpLe, OpGt, OpGe:
		b.compare(c, string(op), value)
	case OpBetween:
		a := value.([]any)
		b.compare(c, ">=", a[0])
		b.w(" AND ")
		b.compare(c, "<=", a[1])
	case OpIn, OpOverlap, OpIOverlap:
		var strs, nums, bools []any
		for _, v := range asList(value) {
			switch x := v.(type) {
			case string:
				if op == OpIOverlap {
					x = Fold(x)
				}
				strs = append(strs, []byte(x))
			case float64:
				nums = append(nums, x)
			case bool:
				bools = append(bools, []byte(strconv.FormatBool(x)))
			}
		}
		first := true
		group := func(kind string, col func(*builder), vals []any) {
			if len(vals) == 0 {
				return
			}
			if !first {
				b.w(" OR ")
			}
			first = false
			b.w("(")
			kindIs(kind)
			b.w(" AND ")
			col(b)
			b.w(" IN (")
			for i, v := range vals {
				if i > 0 {
					b.w(", ")
				}
				b.arg(v)
			}
			b.w("))")
		}
		strCol := c.text
		if op == OpIOverlap {
			strCol = c.fold
		}
		group("s", strCol, strs)
		group("n", c.num, nums)
		group("b", c.text, bools)
	case OpLike, OpILike:
		pat, err := parsePattern(value.(string))
		if err != nil {
			return err
		}
		col := c.text
		if op == OpILike {
			pat = pat.fold()
			col = c.fold
		}
		kindIs("s")
		if pre := pat.prefix(); pre != "" {
			// A byte range on the literal prefix lets the index narrow
			// the candidates (the pattern match itself cannot use it).
			b.w(" AND ")
			col(b)
			b.w(" >= ")
			b.arg([]byte(pre))
			if succ := byteSuccessor(pre); succ != nil {
				b.w(" AND ")
				col(b)
				b.w(" < ")
				b.arg(succ)
			}
		}
		b.w(" AND ")
		if b.pg {
			b.w("convert_from(")
			col(b)
			b.w(", 'UTF8') LIKE ")
			b.arg(pat.like())
		} else {
			col(b)
			b.w(" GLOB ")
			b.arg(pat.glob())
		}
	default:
		return fmt.Errorf("operator %s", op)
	}
	return nil
}

// compare writes kind-guarded col OP value for a number or a string.
func (b *builder) compare(c cols, op string, value any) {
	b.w("(")
	switch v := value.(type) {
	case float64:
		c.kind(b)
		b.w(" = 'n' AND ")
		c.num(b)
		b.w(" ", op, " ")
		b.arg(v)
	case string:
		c.kind(b)
		b.w(" = 's' AND ")
		c.text(b)
		b.w(" ", op, " ")
		b.arg([]byte(v))
	}
	b.w(")")
}

// orderCols returns the columns to sort on for path p, adding the join
// they need to the FROM clause.
func (b *builder) orderCols(from *builder, p Path, indexed bool) (cols, error) {
	if indexed {
		o := from.alias("o")
		from.w(" LEFT JOIN pubsub_item_values ", o, " ON ", o, ".item_id = i.id AND ", o, ".path = ")
		from.arg(p.String())
		from.w(" AND ", o, ".role IN (1, 2)")
		return indexedCols(o), nil
	}
	if b.pg {
		jp, err := p.pgPath()
		if err != nil {
			return cols{}, err
		}
		o := from.alias("o")
		from.w(" LEFT JOIN LATERAL (SELECT ")
		pgValue(from, jp)
		from.w(" AS x) ", o, " ON true")
		return pgCols(o + ".x"), nil
	}
	jp, err := p.sqlitePath()
	if err != nil {
		return cols{}, err
	}
	return sqliteWholeCols(jp), nil
}

// orderBy writes the sort terms of a value: missing and null last in both
// directions, then numbers, strings, booleans, arrays, objects; numbers
// numerically, strings and booleans by bytes.
func (b *builder) orderBy(c cols, dir string) {
	c.kind(b)
	b.w(" IS NULL, CASE ")
	c.kind(b)
	b.w(" WHEN 'n' THEN 0 WHEN 's' THEN 1 WHEN 'b' THEN 2 WHEN 'a' THEN 3 ELSE 4 END", dir, ", ")
	c.num(b)
	b.w(dir, ", ")
	c.text(b)
	b.w(dir)
}
