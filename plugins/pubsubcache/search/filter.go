package search

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Op is a filter operator.
type Op string

// The operators of DESIGN §6 (the ancestor's set, with < <= > >= made
// right). Semantics are in the package documentation.
const (
	OpEq        Op = "=="
	OpNe        Op = "!="
	OpLt        Op = "<"
	OpLe        Op = "<="
	OpGt        Op = ">"
	OpGe        Op = ">="
	OpBetween   Op = "between"
	OpIn        Op = "in"
	OpNotIn     Op = "not_in"
	OpLike      Op = "like"
	OpILike     Op = "ilike"
	OpNotLike   Op = "not_like"
	OpNotILike  Op = "not_ilike"
	OpOverlap   Op = "overlap"
	OpIOverlap  Op = "ioverlap"
	OpDisjoint  Op = "disjoint"
	OpIDisjoint Op = "idisjoint"
)

// Ops lists every operator.
var Ops = []Op{OpEq, OpNe, OpLt, OpLe, OpGt, OpGe, OpBetween, OpIn, OpNotIn, OpLike, OpILike,
	OpNotLike, OpNotILike, OpOverlap, OpIOverlap, OpDisjoint, OpIDisjoint}

// negations maps each negated operator to the positive one it complements.
var negations = map[Op]Op{OpNe: OpEq, OpNotIn: OpIn, OpNotLike: OpLike, OpNotILike: OpILike,
	OpDisjoint: OpOverlap, OpIDisjoint: OpIOverlap}

// positive returns the operator to evaluate and whether the result is
// negated.
func (o Op) positive() (Op, bool) {
	if p, ok := negations[o]; ok {
		return p, true
	}
	return o, false
}

func (o Op) valid() bool {
	for _, x := range Ops {
		if x == o {
			return true
		}
	}
	return false
}

// maxValueLen bounds a filter's value (JSON text).
const maxValueLen = 64 << 10

// Filter is one condition on a parsed JSON path.
type Filter struct {
	Path Path
	Op   Op
	// Value is decoded JSON: string, float64, bool, []any or map[string]any.
	Value any
}

func (f Filter) String() string {
	v, _ := json.Marshal(f.Value)
	return fmt.Sprintf("%s %s %s", f.Path, f.Op, v)
}

// ParseFilter parses the -F argument of `cache search`: PATH, OP and VALUE
// split on the first two runs of spaces; VALUE (the rest, spaces allowed)
// is JSON when it parses as JSON, else a string.
func ParseFilter(s string) (Filter, error) {
	s = strings.TrimLeft(s, " ")
	pathStr, rest, ok := strings.Cut(s, " ")
	if !ok {
		return Filter{}, fmt.Errorf("filter %q: want 'PATH OP VALUE'", s)
	}
	rest = strings.TrimLeft(rest, " ")
	opStr, value, ok := strings.Cut(rest, " ")
	if !ok {
		return Filter{}, fmt.Errorf("filter %q: missing VALUE (want 'PATH OP VALUE')", s)
	}
	value = strings.TrimLeft(value, " ")
	return NewFilter(pathStr, opStr, []byte(value), true)
}

// NewFilter builds and validates a filter from its parts. valueText is
// JSON; when lenient is set, text that is not JSON is taken as a string
// (the CLI's rule), otherwise it is an error.
func NewFilter(path, op string, valueText []byte, lenient bool) (Filter, error) {
	p, err := ParsePath(path)
	if err != nil {
		return Filter{}, fmt.Errorf("filter on %q: %w", path, err)
	}
	o := Op(op)
	if !o.valid() {
		return Filter{}, fmt.Errorf("filter on %s: unknown operator %q (one of: %s)", p, op, opList())
	}
	if len(valueText) > maxValueLen {
		return Filter{}, fmt.Errorf("filter %s %s: value longer than %d bytes", p, o, maxValueLen)
	}
	v, err := decodeValue(valueText)
	if err != nil {
		if !lenient {
			return Filter{}, fmt.Errorf("filter %s %s: value is not JSON: %v", p, o, err)
		}
		if !utf8.Valid(valueText) {
			return Filter{}, fmt.Errorf("filter %s %s: value is not valid UTF-8", p, o)
		}
		v = string(valueText)
	}
	f := Filter{Path: p, Op: o, Value: v}
	if err := f.validate(); err != nil {
		return Filter{}, err
	}
	return f, nil
}

func opList() string {
	s := make([]string, len(Ops))
	for i, o := range Ops {
		s[i] = string(o)
	}
	return strings.Join(s, " ")
}

// decodeValue decodes one JSON value (numbers as float64).
func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// validate checks that the value suits the operator.
func (f Filter) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("filter %s: "+format, append([]any{f}, a...)...)
	}
	if err := checkNumbers(f.Value); err != nil {
		return bad("%v", err)
	}
	op, _ := f.Op.positive()
	switch op {
	case OpEq:
		if f.Value == nil {
			return bad("null never matches (a missing path or JSON null matches no operator but the negated ones); use a negated operator")
		}
	case OpLt, OpLe, OpGt, OpGe:
		if !isOrdered(f.Value) {
			return bad("%s needs a number or a string", f.Op)
		}
	case OpBetween:
		a, ok := f.Value.([]any)
		if !ok || len(a) != 2 || !isOrdered(a[0]) || !sameKind(a[0], a[1]) {
			return bad("between needs [LOW, HIGH]: two numbers or two strings")
		}
	case OpIn, OpOverlap, OpIOverlap:
		vals := asList(f.Value)
		if len(vals) == 0 {
			return bad("%s needs a value or a non-empty list of values", f.Op)
		}
		if len(vals) > 1000 {
			return bad("%s takes at most 1000 values", f.Op)
		}
		for _, v := range vals {
			if !isScalar(v) {
				return bad("%s takes strings, numbers and booleans (got %s)", f.Op, jsonText(v))
			}
		}
	case OpLike, OpILike:
		if _, ok := f.Value.(string); !ok {
			return bad("%s needs a string pattern", f.Op)
		}
	}
	return nil
}

func checkNumbers(v any) error {
	switch x := v.(type) {
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return errors.New("number out of range")
		}
	case []any:
		for _, e := range x {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, e := range x {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func isOrdered(v any) bool {
	switch v.(type) {
	case float64, string:
		return true
	}
	return false
}

func isScalar(v any) bool {
	switch v.(type) {
	case float64, string, bool:
		return true
	}
	return false
}

func sameKind(a, b any) bool {
	switch a.(type) {
	case float64:
		_, ok := b.(float64)
		return ok
	case string:
		_, ok := b.(string)
		return ok
	}
	return false
}

// asList returns v as a list: its elements for an array, itself otherwise.
func asList(v any) []any {
	if a, ok := v.([]any); ok {
		return a
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// canonicalJSON is the canonical text of a JSON value: Go's encoding
// (object keys sorted, numbers as float64), as Ent stores parsed JSON.
func canonicalJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Fold is the case folding of ilike and ioverlap: Unicode simple case
// folding of each code point (to upper, then to lower: ſ and s, K and k,
// σ and ς fold alike). The same function feeds the index on both engines.
func Fold(s string) string {
	return strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, s)
}
