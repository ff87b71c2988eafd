package search

import (
	"bytes"

	"example.org/backend/core/storage"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
)

// search_parsed is on every SQLite connection the daemon opens (the
// expression indexes call it, so every connection that writes pubsub_items
// needs it).
func init() { storage.RegisterSQLiteFunc("search_parsed", func() any { return newParsedFunc() }, true) }

// newParsedFunc returns search_parsed(parsed, payload), registered on
// every SQLite connection of the daemon (storage.RegisterSQLiteFunc): the parsed JSON (as
// text) of a pubsub_items row whose parsed column holds the stored form
// of payloadcodec.PackParsed and payload that of payloadcodec.Pack. NULL
// for NULL, and for a damaged value (a search matches nothing in it; the
// search's fetch refuses the item). The search's filters and expression
// indexes read the parsed JSON through it, so it is deterministic and
// every connection that writes pubsub_items must have it (the sqlite3
// shell can read such a database but not write its items while
// expression indexes exist).
//
// The function owns a one-entry cache of its last result (a condition
// reads a row's document two or three times): SQLite calls it on its
// connection's goroutine only, one statement at a time.
func newParsedFunc() func(parsedArg, payloadArg any) any {
	var lastParsed, lastPayload []byte
	var last any
	return func(parsedArg, payloadArg any) any {
		var parsed, payload []byte
		switch x := parsedArg.(type) {
		case string:
			return x // JSON text (rows written before packing)
		case []byte:
			parsed = x
		}
		if len(parsed) == 0 {
			return nil
		}
		if parsed[0] != 0 {
			return string(parsed)
		}
		switch x := payloadArg.(type) {
		case string:
			payload = []byte(x)
		case []byte:
			payload = x
		}
		if last != nil && bytes.Equal(parsed, lastParsed) && bytes.Equal(payload, lastPayload) {
			return last
		}
		xml, err := payloadcodec.Unpack(payload)
		if err != nil {
			return nil
		}
		doc, err := payloadcodec.UnpackParsed(parsed, xml)
		if err != nil {
			return nil
		}
		lastParsed, lastPayload, last = parsed, payload, string(doc)
		return last
	}
}
