package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
)

// pubsubCache is the PubSubCacheService client (large answers allowed).
func (c *conn) pubsubCache() backendv2connect.PubSubCacheServiceClient {
	return backendv2connect.NewPubSubCacheServiceClient(c.http, c.baseURL, c.largeOpts()...)
}

// cacheVerbs are the verbs of `backend cache` that the cache itself serves
// (DESIGN §9): get, sync, status, purge, reset.
func (a *app) cacheVerbs() []*cobra.Command {
	return []*cobra.Command{a.cacheGetCommand(), a.cacheSyncCommand(), a.cacheStatusCommand(), a.cachePurgeCommand(), a.cacheResetCommand()}
}

func (a *app) cacheGetCommand() *cobra.Command {
	var fl itemsFlags
	cmd := &cobra.Command{
		Use:   "get -p PROFILE [-s SERVICE] -n NODE [-m MAX] [-i ID]... [--order-by creation|modification]",
		Short: "Get items of a node from the cache only",
		Long: `Get items of a cached node from the cache only (never from the service), with
the flags of ` + "`pubsub items`" + `. complete is false when the node is not completely
cached; stale is true when it is not fresh. A node that is not cached is an
error: sync it with ` + "`backend cache sync`" + `.
With -o json: {"items":[{"id","publisher","xml"}…],"rsm":…|null,"complete","from_cache","stale"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := fl.request()
			if err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			stream, err := c.pubsubCache().Get(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return c.check(err)
			}
			defer stream.Close()
			return c.check(a.printItems(stream, fl.xml))
		},
	}
	fl.register(cmd, "creation or modification", "accepted for symmetry with `pubsub items` (cache get never asks the service)")
	return cmd
}

// syncJSON is the JSON shape of `cache sync`.
type syncJSON struct {
	Profile      string  `json:"profile"`
	Service      string  `json:"service"`
	Node         string  `json:"node"`
	State        string  `json:"state"`
	Fresh        bool    `json:"fresh"`
	Items        int64   `json:"items"`
	Total        *int64  `json:"total"`
	ParsePending int64   `json:"parse_pending"`
	Error        *string `json:"error"`
	Done         bool    `json:"done"`
}

func syncOut(m *backendv2.PubSubCacheSyncProgress) syncJSON {
	out := syncJSON{Profile: m.GetProfile(), Service: m.GetService(), Node: m.GetNode(), State: m.GetState(), Fresh: m.GetFresh(), Items: m.GetItems(),
		Total: m.Total, ParsePending: m.GetParsePending(), Done: m.GetDone()}
	if e := m.GetError(); e != "" {
		out.Error = &e
	}
	return out
}

func (a *app) cacheSyncCommand() *cobra.Command {
	var t target
	var wait bool
	cmd := &cobra.Command{
		Use:   "sync -p PROFILE [-s SERVICE] -n NODE [--wait]",
		Short: "Sync a node into the cache (whatever the analysers say)",
		Long: `Sync a node into the cache: every item is fetched and stored, and the node is
kept fresh by notifications from then on. Without --wait the sync goes on in
the background (see ` + "`backend cache status`" + ` and ` + "`backend events`" + `); with --wait the
command waits until the node is usable — complete, fresh and every item
parsed — showing a progress bar when stderr is a terminal; when the node's parser is down it
says how many items wait for it (they are parsed when it is back).
With -o json: {"profile","service","node","state","fresh","items","total",
"parse_pending","error","done"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			stream, err := c.pubsubCache().Sync(cmd.Context(), connect.NewRequest(&backendv2.PubSubCacheSyncRequest{
				Profile: t.profile, Service: t.service, Node: t.node, Wait: wait}))
			if err != nil {
				return c.check(err)
			}
			defer stream.Close()
			var bar *progressbar.ProgressBar
			if wait && !a.jsonOutput() && isTerminal(a.stderr) {
				bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("syncing "+t.node),
					progressbar.OptionShowCount(), progressbar.OptionSetItsString("items"), progressbar.OptionShowIts(),
					progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			var last *backendv2.PubSubCacheSyncProgress
			for stream.Receive() {
				last = stream.Msg()
				if bar != nil {
					if last.Total != nil && bar.GetMax64() != *last.Total {
						bar.ChangeMax64(*last.Total)
					}
					_ = bar.Set64(last.GetItems())
				}
			}
			if bar != nil {
				_ = bar.Finish()
			}
			if err := stream.Err(); err != nil {
				return c.check(err)
			}
			if last == nil {
				return errors.New("the daemon sent no progress")
			}
			out := syncOut(last)
			if a.jsonOutput() {
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else if !wait {
				fmt.Fprintf(a.stdout, "sync of %s on %s started (profile %s): see `backend cache status`\n", out.Node, out.Service, out.Profile)
			} else {
				fresh := "fresh"
				if !out.Fresh {
					fresh = "not fresh"
				}
				fmt.Fprintf(a.stdout, "%s on %s (profile %s): %s, %s, %d items\n", out.Node, out.Service, out.Profile, out.State, fresh, out.Items)
				if out.ParsePending > 0 {
					fmt.Fprintf(a.stdout, "%d items wait for their parser (it is down); they are parsed when it is back: see `backend plugins list`\n", out.ParsePending)
				}
			}
			if out.Error != nil && out.Done {
				return fmt.Errorf("sync of %s failed: %s", out.Node, *out.Error)
			}
			return nil
		},
	}
	t.flags(cmd, true)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the sync ends (progress bar on stderr)")
	return cmd
}

// cacheNodeJSON is one node of `cache status` (DESIGN §9).
type cacheNodeJSON struct {
	Profile        string  `json:"profile"`
	Service        string  `json:"service"`
	Node           string  `json:"node"`
	Analyser       *string `json:"analyser"`
	Type           *string `json:"type"`
	Subtype        *string `json:"subtype"`
	State          string  `json:"state"`
	Fresh          bool    `json:"fresh"`
	Items          int64   `json:"items"`
	LastSync       *string `json:"last_sync"`
	Attempts       int64   `json:"attempts"`
	LastError      *string `json:"last_error"`
	ParsePending   int64   `json:"parse_pending"`
	Capacity       *int64  `json:"capacity"`
	CapacitySource *string `json:"capacity_source"`
	Method         *string `json:"reconcile_method"`
}

func (a *app) cacheStatusCommand() *cobra.Command {
	var profile, service, node string
	cmd := &cobra.Command{
		Use:   "status [-p PROFILE] [-s SERVICE] [-n NODE]",
		Short: "Show cached nodes and their sync state",
		Long: `Show cached nodes: analyser, type (and subtype), state (never, no_sync,
in_progress, complete, partial, error), freshness, item count, last sync,
failed sync attempts and the last error.
With -o json: {"nodes":[{"profile","service","node","analyser","type","subtype",
"state","fresh","items","last_sync","attempts","last_error","parse_pending",
"capacity","capacity_source","reconcile_method"}…]}; capacity is how many items
the service keeps (null: unknown), capacity_source where that was learned
(config, config_range, learned); reconcile_method how the last sync since the
daemon started made the node complete: full (the whole listing), ids+newest
or ids (by difference: the id listing and the newest items; see
cache.reconcile), null when none.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.pubsubCache().Status(cmd.Context(), connect.NewRequest(&backendv2.PubSubCacheStatusRequest{
				Profile: profile, Service: service, Node: node}))
			if err != nil {
				return c.check(err)
			}
			nodes := make([]cacheNodeJSON, 0, len(res.Msg.GetNodes()))
			for _, n := range res.Msg.GetNodes() {
				j := cacheNodeJSON{Profile: n.GetProfile(), Service: n.GetService(), Node: n.GetNode(), Analyser: n.Analyser, Type: n.Type,
					Subtype: n.Subtype, State: n.GetState(), Fresh: n.GetFresh(), Items: n.GetItems(), Attempts: n.GetAttempts(), LastError: n.LastError,
					ParsePending: n.GetParsePending(), Capacity: n.Capacity, CapacitySource: n.CapacitySource, Method: n.ReconcileMethod}
				if n.LastSync != nil {
					s := n.LastSync.AsTime().UTC().Format(time.RFC3339)
					j.LastSync = &s
				}
				nodes = append(nodes, j)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"nodes": nodes})
			}
			t := &table{header: []string{"PROFILE", "SERVICE", "NODE", "ANALYSER", "TYPE", "STATE", "FRESH", "ITEMS", "LAST SYNC", "METHOD", "ATTEMPTS", "ERROR"}}
			for _, n := range nodes {
				typ := strOr(n.Type)
				if n.Subtype != nil && *n.Subtype != "" {
					typ += "/" + *n.Subtype
				}
				last := "-"
				if n.LastSync != nil {
					last = shortTime(*n.LastSync)
				}
				t.add(n.Profile, cellText(n.Service), cellText(n.Node), strOr(n.Analyser), typ, n.State, fmt.Sprint(n.Fresh),
					fmt.Sprint(n.Items), last, strOr(n.Method), fmt.Sprint(n.Attempts), cellText(strOr(n.LastError)))
			}
			return t.write(a.stdout, termWidth(a.stdout, 160))
		},
	}
	f := cmd.Flags()
	f.StringVarP(&profile, "profile", "p", "", "only this profile")
	f.StringVarP(&service, "service", "s", "", "only this service")
	f.StringVarP(&node, "node", "n", "", "only this node")
	return cmd
}

// parseTime reads TIME: RFC 3339 or a Unix timestamp (whole seconds).
func parseTime(flag, s string) (*timestamppb.Timestamp, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &timestamppb.Timestamp{Seconds: n}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, usagef("--%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a Unix timestamp", flag, s)
	}
	return &timestamppb.Timestamp{Seconds: t.Unix()}, nil
}

func (a *app) cachePurgeCommand() *cobra.Command {
	var profiles, services, nodes, types, subtypes []string
	var createdBefore, updatedBefore string
	cmd := &cobra.Command{
		Use:   "purge [-p PROFILE]... [-s SERVICE]... [-n NODE]... [-t TYPE]... [--subtype S]... [--created-before TIME] [--updated-before TIME]",
		Short: "Remove cached items",
		Long: `Remove cached items matching every given filter (repeat a flag for several
values; no filter removes everything). The nodes concerned are no longer
complete: they are answered by the service until synced again. TIME is RFC
3339 or a Unix timestamp; --subtype '' matches nodes without subtype.
With -o json: {"ok":true,"nodes":N,"items":N}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &backendv2.PubSubCachePurgeRequest{Profiles: profiles, Services: services, Nodes: nodes, Types: types, Subtypes: subtypes}
			if createdBefore != "" {
				v, err := parseTime("created-before", createdBefore)
				if err != nil {
					return err
				}
				req.CreatedBefore = v
			}
			if updatedBefore != "" {
				v, err := parseTime("updated-before", updatedBefore)
				if err != nil {
					return err
				}
				req.UpdatedBefore = v
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.pubsubCache().Purge(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"ok": true, "nodes": res.Msg.GetNodes(), "items": res.Msg.GetItems()})
			}
			_, err = fmt.Fprintf(a.stdout, "%d items removed from %d nodes\n", res.Msg.GetItems(), res.Msg.GetNodes())
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&profiles, "profile", "p", nil, "profile (repeatable)")
	f.StringArrayVarP(&services, "service", "s", nil, "service JID (repeatable)")
	f.StringArrayVarP(&nodes, "node", "n", nil, "node (repeatable)")
	f.StringArrayVarP(&types, "type", "t", nil, "node type given by the analyser (repeatable)")
	f.StringArrayVar(&subtypes, "subtype", nil, "node subtype (repeatable; '' for none)")
	f.StringVar(&createdBefore, "created-before", "", "only items the cache stored before TIME")
	f.StringVar(&updatedBefore, "updated-before", "", "only items last updated before TIME")
	return cmd
}

func (a *app) cacheResetCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset [--yes]",
		Short: "Remove every cached node and item of every profile",
		Long: `Remove every cached node and item of every profile. Asks for --yes.
With -o json: {"ok":true,"nodes":N}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("cache reset removes every cached node of every profile: add --yes to confirm")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.pubsubCache().Reset(cmd.Context(), connect.NewRequest(&backendv2.PubSubCacheResetRequest{Confirm: true}))
			if err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"ok": true, "nodes": res.Msg.GetNodes()})
			}
			_, err = fmt.Fprintf(a.stdout, "%d cached nodes removed\n", res.Msg.GetNodes())
			return err
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}
