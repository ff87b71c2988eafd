package search

import (
	"errors"
	"fmt"
	"strings"
)

// Order keywords.
const (
	OrderCreation     = "creation"
	OrderModification = "modification"
	OrderItemID       = "item_id"
	OrderRank         = "rank"
)

// Order is one sort key: a keyword (creation, modification, item_id, rank)
// or a path.
type Order struct {
	// Keyword is set for a keyword key, empty for a path.
	Keyword string
	Path    Path
	Desc    bool
}

func (o Order) String() string {
	k := o.Keyword
	if k == "" {
		k = o.Path.String()
		if IsKeyword(k) {
			k = `["` + k + `"]`
		}
	}
	if o.Desc {
		return k + ":desc"
	}
	return k + ":asc"
}

// IsKeyword reports whether s is an order keyword (a path spelled like one
// must be written ["s"]).
func IsKeyword(s string) bool {
	switch s {
	case OrderCreation, OrderModification, OrderItemID, OrderRank:
		return true
	}
	return false
}

// ParseOrder parses an --order-by value: KEY[:asc|:desc], KEY being a
// keyword or a path (a path equal to a keyword is written ["rank"]).
func ParseOrder(s string) (Order, error) {
	key, desc := s, false
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		switch dir := s[i+1:]; {
		case dir == "asc":
			key = s[:i]
		case dir == "desc":
			key, desc = s[:i], true
		case IsKeyword(s[:i]):
			return Order{}, fmt.Errorf("order %q: direction %q is not asc or desc", s, dir)
		}
	}
	return newOrder(key, desc)
}

func newOrder(key string, desc bool) (Order, error) {
	o := Order{Desc: desc}
	if IsKeyword(key) {
		o.Keyword = key
		return o, nil
	}
	p, err := ParsePath(key)
	if err != nil {
		return o, fmt.Errorf("order key %q is not a keyword (creation, modification, item_id, rank) nor a path: %w", key, err)
	}
	o.Path = p
	return o, nil
}

// Query is a search over the cache.
type Query struct {
	// Node filters: a node matches when each non-empty list holds its
	// value. In Types and Subtypes, "" matches nodes without one.
	Profiles, Services, Nodes, Types, Subtypes []string
	// ItemIDs keeps items with one of these ids.
	ItemIDs []string
	// Filters on parsed JSON paths, all of which must hold.
	Filters []Filter
	// FTS is the full-text query ("" for none).
	FTS string
	// OrderBy lists the sort keys; default creation ascending. Ties are
	// broken by the cache's row order (insertion).
	OrderBy []Order
	// Offset skips that many items; Limit caps the answer (0: no limit).
	Offset, Limit int
	// WithPayload returns each item's payload bytes and publisher.
	WithPayload bool
}

// Limits of a query.
const (
	maxListLen = 1000
	maxFilters = 64
	maxOrders  = 16
)

func (q Query) validate() error {
	for name, l := range map[string][]string{"profiles": q.Profiles, "services": q.Services, "nodes": q.Nodes,
		"types": q.Types, "subtypes": q.Subtypes, "item ids": q.ItemIDs} {
		if len(l) > maxListLen {
			return fmt.Errorf("more than %d %s", maxListLen, name)
		}
	}
	if len(q.Filters) > maxFilters {
		return fmt.Errorf("more than %d filters", maxFilters)
	}
	if len(q.OrderBy) > maxOrders {
		return fmt.Errorf("more than %d order keys", maxOrders)
	}
	for _, f := range q.Filters {
		if len(f.Path) == 0 {
			return errors.New("filter with an empty path")
		}
		if err := f.validate(); err != nil {
			return err
		}
	}
	for _, o := range q.OrderBy {
		if o.Keyword == OrderRank && q.FTS == "" {
			return errors.New("order by rank needs a full-text query (-f)")
		}
		if o.Keyword == "" && len(o.Path) == 0 {
			return errors.New("order key with an empty path")
		}
	}
	if q.Offset < 0 || q.Limit < 0 {
		return errors.New("index and limit must not be negative")
	}
	return nil
}
