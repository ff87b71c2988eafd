package main

import (
	"encoding/json"
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/plugins/pubsubcache/search"
)

func (c *conn) cache() backendv2connect.CacheServiceClient {
	return backendv2connect.NewCacheServiceClient(c.http, c.baseURL, c.opts...)
}

func (a *app) cacheCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Query the pubsub cache",
	}
	cmd.AddCommand(a.cacheVerbs()...)
	cmd.AddCommand(a.cacheSearchCommand())
	return cmd
}

// printSearch prints search results as a table: node and id (profile and
// service too when the results span several), then the parsed title and
// date (read from the payload when --with-payload and nothing is parsed);
// with --with-payload each item's XML follows the table.
func (a *app) printSearch(items []cacheItemJSON, withPayload bool) error {
	profiles, services := map[string]bool{}, map[string]bool{}
	for _, it := range items {
		profiles[it.Profile], services[it.Service] = true, true
	}
	header := []string{"NODE", "ID", "DATE", "TITLE"}
	if len(services) > 1 {
		header = append([]string{"SERVICE"}, header...)
	}
	if len(profiles) > 1 {
		header = append([]string{"PROFILE"}, header...)
	}
	t := &table{header: header}
	for _, it := range items {
		s, ok := parsedSummary(it.Parsed)
		if it.XML != nil && (s.Title == "" || s.Date == "") {
			x := summarize(*it.XML)
			if s.Title == "" {
				s.Title = x.Title
			}
			if s.Date == "" {
				s.Date = x.Date
			}
		}
		if !ok && s.Title == "" {
			s.Title = "(no parsed data)"
		}
		row := []string{cellText(it.Node), cellText(it.ID), orDash(s.Date), orDash(s.Title)}
		if len(services) > 1 {
			row = append([]string{cellText(it.Service)}, row...)
		}
		if len(profiles) > 1 {
			row = append([]string{it.Profile}, row...)
		}
		t.add(row...)
	}
	if err := t.write(a.stdout, termWidth(a.stdout, 120)); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(a.stdout, count(len(items), "item")); err != nil {
		return err
	}
	if withPayload {
		for _, it := range items {
			if it.XML != nil {
				fmt.Fprintln(a.stdout, *it.XML)
			}
		}
	}
	return nil
}

// cacheItemJSON is one item of `cache search` (DESIGN §9).
type cacheItemJSON struct {
	Profile string          `json:"profile"`
	Service string          `json:"service"`
	Node    string          `json:"node"`
	ID      string          `json:"id"`
	Parsed  json.RawMessage `json:"parsed"`
	XML     *string         `json:"xml"`
}

func (a *app) cacheSearchCommand() *cobra.Command {
	var profiles, services, nodes, types, subtypes, items, filters, orders []string
	var fts string
	var index, limit int64
	var withPayload bool
	cmd := &cobra.Command{
		Use:   "search [-p PROFILE]... [-s SERVICE]... [-n NODE]... [-t TYPE]... [--subtype S]... [-i ITEM]... [-F 'PATH OP VALUE']... [-f FTS_QUERY] [--order-by KEY[:asc|:desc]]... [--index N] [--limit N] [--with-payload]",
		Short: "Search cached items",
		Long: `Search cached items by node, item id, parsed JSON fields and full text.

-F takes one argument: PATH, OP and VALUE split on the first two runs of
spaces (VALUE may hold spaces). PATH is dotted keys with [n] indexes
(author.name, tags, links[0].href); a key holding '.', '[' or '"' is written
["key"]. OP is one of == != < <= > >= between in not_in like ilike not_like
not_ilike overlap ioverlap disjoint idisjoint. VALUE is JSON when it parses as
JSON, else a string: -F 'tags overlap ["one tag"]', -F 'published between
["2026-01-01T00:00:00Z","2026-01-02T00:00:00Z"]', -F 'author.name ilike élo%'.
A missing path or JSON null matches only the negated operators. A filter
never matches an item without parsed data (parse pending, no parser, parse
error): skipped_unparsed says how many were left out that way, and
incomplete_nodes lists the searched nodes that are not complete.

-f is a full-text query: words (all must match), "phrases", -excluded, OR.
--order-by KEY is creation, modification, item_id, rank (with -f) or a PATH
(a path equal to a keyword is written ["rank"]); repeat it for several keys.
Default: creation ascending. --index skips N items; --limit 0 means no limit.
An empty --type or --subtype matches nodes without one.

With -o json: {"items":[{"profile","service","node","id","parsed","xml"}…],
"skipped_unparsed":N,"incomplete_nodes":[{"profile","service","node","state"}…]};
xml is null unless --with-payload.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &backendv2.CacheSearchRequest{
				Profiles: profiles, Services: services, Nodes: nodes, Types: types, Subtypes: subtypes,
				ItemIds: items, Fts: fts, Index: index, Limit: limit, WithPayload: withPayload,
			}
			if index < 0 || limit < 0 {
				return usagef("--index and --limit must not be negative")
			}
			for _, s := range filters {
				f, err := search.ParseFilter(s)
				if err != nil {
					return usagef("-F: %v", err)
				}
				v, err := structpb.NewValue(f.Value)
				if err != nil {
					return usagef("-F %q: %v", s, err)
				}
				req.Filters = append(req.Filters, &backendv2.CacheFilter{Path: f.Path.String(), Op: string(f.Op), Value: v})
			}
			for _, s := range orders {
				o, err := search.ParseOrder(s)
				if err != nil {
					return usagef("--order-by: %v", err)
				}
				key := o.Keyword
				if key == "" {
					key = o.Path.String()
					if search.IsKeyword(key) {
						key = `["` + key + `"]`
					}
				}
				req.OrderBy = append(req.OrderBy, &backendv2.CacheOrder{Key: key, Desc: o.Desc})
			}
			if fts != "" {
				if _, err := search.ParseFTS(fts); err != nil {
					return usagef("-f: %v", err)
				}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			if !a.jsonOutput() {
				// The table summarises the payload of an item without a
				// parsed title or date.
				req.WithPayload = true
			}
			stream, err := c.cache().Search(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return c.check(err)
			}
			defer stream.Close()
			out := cacheSearchJSON{Items: []cacheItemJSON{}, IncompleteNodes: []cacheSearchNodeJSON{}}
			for stream.Receive() {
				m := stream.Msg()
				if h := m.GetHeader(); h != nil {
					out.SkippedUnparsed = h.GetSkippedUnparsed()
					for _, n := range h.GetIncompleteNodes() {
						out.IncompleteNodes = append(out.IncompleteNodes, cacheSearchNodeJSON{Profile: n.GetProfile(), Service: n.GetService(), Node: n.GetNode(), State: n.GetState()})
					}
				}
				for _, it := range m.GetItems() {
					j := cacheItemJSON{Profile: it.GetProfile(), Service: it.GetService(), Node: it.GetNode(), ID: it.GetId(), XML: it.Xml,
						Parsed: json.RawMessage("null")}
					if it.Parsed != nil {
						b, err := json.Marshal(it.GetParsed().AsMap())
						if err != nil {
							return fmt.Errorf("parsed data of item %s: %w", it.GetId(), err)
						}
						j.Parsed = b
					}
					out.Items = append(out.Items, j)
				}
			}
			if err := stream.Err(); err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			if err := a.printSearch(out.Items, withPayload); err != nil {
				return err
			}
			if out.SkippedUnparsed > 0 {
				fmt.Fprintf(a.stderr, "%d items left out: they have no parsed data yet (see `backend cache status`)\n", out.SkippedUnparsed)
			}
			for _, n := range out.IncompleteNodes {
				fmt.Fprintf(a.stderr, "%s on %s (profile %s) is %s: results may miss its items\n", n.Node, n.Service, n.Profile, n.State)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&profiles, "profile", "p", nil, "profile name (repeatable)")
	f.StringArrayVarP(&services, "service", "s", nil, "pubsub service JID (repeatable)")
	f.StringArrayVarP(&nodes, "node", "n", nil, "node name (repeatable)")
	f.StringArrayVarP(&types, "type", "t", nil, "node type given by the analyser, e.g. blog (repeatable)")
	f.StringArrayVar(&subtypes, "subtype", nil, "node subtype, e.g. comment (repeatable)")
	f.StringArrayVarP(&items, "item", "i", nil, "item id (repeatable)")
	f.StringArrayVarP(&filters, "filter", "F", nil, "'PATH OP VALUE' filter on parsed data (repeatable)")
	f.StringVarP(&fts, "fts", "f", "", "full-text query")
	f.StringArrayVar(&orders, "order-by", nil, "KEY[:asc|:desc] (repeatable)")
	f.Int64Var(&index, "index", 0, "number of items to skip")
	f.Int64Var(&limit, "limit", 0, "maximum number of items (0: no limit)")
	f.BoolVar(&withPayload, "with-payload", false, "include each item's XML")
	return cmd
}

// cacheSearchJSON is the JSON shape of `cache search` (DESIGN §9).
type cacheSearchJSON struct {
	Items           []cacheItemJSON       `json:"items"`
	SkippedUnparsed int64                 `json:"skipped_unparsed"`
	IncompleteNodes []cacheSearchNodeJSON `json:"incomplete_nodes"`
}

// cacheSearchNodeJSON is a searched node that is not complete.
type cacheSearchNodeJSON struct {
	Profile string `json:"profile"`
	Service string `json:"service"`
	Node    string `json:"node"`
	State   string `json:"state"`
}
