// Package search answers searches over the pubsub cache (DESIGN §6, §9):
// node filters, item ids, filters on parsed JSON paths, full-text search,
// ordering and paging, with the same result sets on SQLite and PostgreSQL.
//
// # Paths
//
// A path is dotted keys with [n] array indexes (author.name, tags,
// links[0].href); a key holding '.', '[', ']', '"' or white space is
// written ["key"] in JSON string syntax (["odd.key"]). A path that does
// not exist in an item, or leads to JSON null, is "missing".
//
// # Operators
//
// A filter never matches an item without parsed data (parse pending, no
// parser, parse error), positive or negated: Search reports how many items
// were left out that way (Result.SkippedUnparsed) and which searched nodes
// are not complete (Result.IncompleteNodes). On parsed items, every
// operator is evaluated on the value at the path; a missing value makes
// every positive operator false. The negated operators (!=, not_in,
// not_like, not_ilike, disjoint, idisjoint) are the exact complements of
// ==, in, like, ilike, overlap and ioverlap on parsed items: they are true
// on a missing value and on a value of another type.
//
//   - == VALUE: same JSON type and equal value. Numbers compare
//     numerically (5 == 5.0), strings byte for byte (case-sensitive),
//     booleans by value; an array or object compares as a whole (element
//     order matters, key order does not). A string never equals a number
//     ("5" is not 5). null is refused as a VALUE.
//   - < <= > >= VALUE (a number or a string): true only on a value of the
//     same type; < and > are strict. Strings compare by bytes (UTF-8, that
//     is code point order; no locale), so RFC 3339 UTC times compare
//     chronologically as strings. between [LOW, HIGH] is LOW <= v <= HIGH
//     (inclusive; empty when LOW > HIGH).
//   - in LIST: the (scalar) value equals one of LIST (strings, numbers,
//     booleans; a single VALUE is a one-element list). An array value is
//     never "in" a list: use overlap.
//   - like PATTERN: the value is a string matching PATTERN, where %
//     matches any sequence, _ one character and \ escapes the next
//     character; case-sensitive. ilike compares both sides case-folded.
//   - overlap LIST: one of the value's members equals one of LIST, the
//     members of an array being its scalar elements and a scalar being its
//     own only member (an object has none). ioverlap folds strings.
//
// Case folding (ilike, ioverlap) is Fold: Unicode simple case folding per
// code point, applied in Go to the indexed values and to the patterns, so
// both engines fold alike. For paths that are not indexed SQLite calls the
// same Go function (registered on the connection) and PostgreSQL
// lower(upper(x)) under the ICU root collation, which agrees with Fold
// except for the few characters whose upper case is several characters
// (ß folds to "ss" there): declare such paths as indexed for an exact match.
//
// # Full-text search
//
// The query syntax is the same on both engines: words (all must match),
// "phrases" (terms next to each other), -excluded words or phrases, and OR
// between two words or phrases (a OR b c means (a or b) and c). Terms are
// runs of letters, digits and marks; a word with punctuation (xyz-1) is the
// phrase of its parts. Matching is case- and diacritic-insensitive
// (FTS5 unicode61 remove_diacritics 2; PostgreSQL 'simple' over unaccent).
// The query is rebuilt from its terms: FTS5 strings on SQLite, bound
// phraseto_tsquery() calls on PostgreSQL; no user text reaches either
// engine's query syntax.
//
// # Order
//
// Keys: creation, modification, item_id (by bytes), rank (best first when
// ascending: FTS5 bm25 on SQLite, ts_rank on PostgreSQL; the order of
// equally relevant items may differ between engines), or a path. Ordering
// by a path puts missing values last in both directions, then orders
// numbers (numerically), strings (by bytes), booleans (false first),
// arrays and objects (in an order that may differ between engines). The
// default is creation ascending; ties are broken by insertion order.
//
// # Indexes
//
// Analysers declare the paths worth indexing; the cache calls IndexItem
// for every item it stores with the union of those paths (the set it gives
// New), which fills the side table pubsub_item_values (one row per scalar
// value, per array element, and per whole array or object), indexed by
// (path, value_text), (path, value_num) and (path, value_fold) (both
// partial: numbers, and the strings that are not their own case fold:
// value_fold is NULL for the others, whose case-insensitive filters read
// value_text) and (item_id, path) on both engines. Filters and orders on an indexed path read the
// side table; others use the engine's JSON functions (json_extract /
// json_each on SQLite, strict jsonpath on PostgreSQL): the results are the
// same, only the speed differs. On SQLite the parsed column holds the
// stored form of payloadcodec.PackParsed, read through search_parsed(parsed,
// payload) (registered by core/storage on every connection), in filters
// and expression indexes alike. When the set of indexed paths changes,
// Reindex rebuilds the table. Strings longer than MaxIndexedText are left
// out of the side table.
//
// Paths nobody declares get expression indexes on demand (AutoIndex, when
// the Searcher has one). The first search with ==, <, <=, >, >=, between,
// in, or like with a literal prefix on such a path (positive, on strings or
// numbers; not booleans, arrays, objects, members or case-folded
// operators, nor orders) runs as before, scanning the searched items, and
// asks for an index, which one goroutine creates in the background: on
// SQLite one index on the first AutoIndexPrefixChars characters of a
// string or the number at the path (NULL otherwise); on PostgreSQL one on
// the string prefix under the "C" collation (byte order) and, for numeric
// filters, one on the exact numeric value. Once it exists, searches add a
// condition on the indexed expression that every matching item meets (the
// prefix of an equal string is equal, of a greater one not smaller;
// PostgreSQL's numeric bounds are widened by one float8 step) and keep the
// exact predicate on the item as the recheck, so the results are the same
// with or without the index. The path reaches that SQL as a literal built
// from the canonical path (quotes doubled, control characters refused);
// keys holding '"' or '\' cannot be searched undeclared anyway. Indexes
// are named pubsub_items_px_<kind>_<hash of the path>; AutoIndex reads them
// from the catalog at start, so no table records them; at most
// MaxAutoIndexes exist per database (then further paths keep scanning).
// SQLite's CREATE INDEX holds the write lock while it reads the items
// (about 20 ms per 5 000 items; writers wait, up to the busy timeout); PostgreSQL's CREATE INDEX CONCURRENTLY lets writes go on, and
// a failed build's invalid index is dropped (and again at start). A failed
// build is retried by a search ten minutes later at the earliest.
//
// # Safety
//
// Paths, operators and values are validated (a malformed query is an
// error wrapping ErrInvalidQuery that names the bad part) and every value
// and path is bound as a parameter: the SQL text only holds fixed
// fragments.
package search
