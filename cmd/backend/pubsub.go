package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core/eventjson"
	"example.org/backend/plugins/xep0060"
)

// pubsub is the PubSubService client (large answers allowed).
func (c *conn) pubsub() backendv2connect.PubSubServiceClient {
	return backendv2connect.NewPubSubServiceClient(c.http, c.baseURL, c.largeOpts()...)
}

// largeOpts are the client options with message limits raised for large
// items answers (see xep0060.MaxMessageBytes).
func (c *conn) largeOpts() []connect.ClientOption {
	return append([]connect.ClientOption{
		connect.WithReadMaxBytes(xep0060.MaxMessageBytes), connect.WithSendMaxBytes(xep0060.MaxMessageBytes),
	}, c.opts...)
}

// pubsubCommand is the `backend pubsub …` group (DESIGN §9).
func (a *app) pubsubCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pubsub",
		Short: "XEP-0060 publish-subscribe",
		Long: `XEP-0060 publish-subscribe through the daemon. Without -s, the profile's own
PEP service (its bare JID) is used.`,
	}
	node := &cobra.Command{Use: "node", Short: "Create, delete, purge or configure nodes"}
	node.AddCommand(
		a.pubsubNodeCommand("create", "Create a node (with --option VAR=VALUE as its configuration)"),
		a.pubsubNodeCommand("delete", "Delete a node"),
		a.pubsubNodeCommand("purge", "Remove every item of a node"),
		a.pubsubNodeCommand("config", "Show a node's configuration form, or submit --option VAR=VALUE fields"),
	)
	cmd.AddCommand(
		a.pubsubItemsCommand(),
		a.pubsubPublishCommand(),
		a.pubsubRetractCommand(),
		a.pubsubSubscribeCommand("subscribe", "Subscribe the profile to a node"),
		a.pubsubSubscribeCommand("unsubscribe", "Unsubscribe the profile from a node"),
		a.pubsubSubscriptionsCommand(),
		node,
	)
	return cmd
}

// target holds -p, -s and -n.
type target struct{ profile, service, node string }

func (t *target) flags(cmd *cobra.Command, nodeRequired bool) {
	f := cmd.Flags()
	f.StringVarP(&t.profile, "profile", "p", "", "profile (required)")
	f.StringVarP(&t.service, "service", "s", "", "pubsub service JID (default: the profile's own PEP service)")
	nodeHelp := "node"
	if nodeRequired {
		nodeHelp += " (required)"
	}
	f.StringVarP(&t.node, "node", "n", "", nodeHelp)
	cmd.MarkFlagRequired("profile")
	if nodeRequired {
		cmd.MarkFlagRequired("node")
	}
}

// parseOptions turns VAR=VALUE flags into API options.
func parseOptions(raw []string) ([]*backendv2.PubSubOption, error) {
	out := make([]*backendv2.PubSubOption, 0, len(raw))
	for _, o := range raw {
		k, v, ok := strings.Cut(o, "=")
		if !ok || k == "" {
			return nil, usagef("--option %q: want VAR=VALUE (e.g. pubsub#max_items=max)", o)
		}
		out = append(out, &backendv2.PubSubOption{Var: k, Value: v})
	}
	return out, nil
}

// itemsFlags are the flags of `pubsub items`, shared by `cache get`.
type itemsFlags struct {
	t             target
	maxItems      int
	rsmMax, index int
	ids           []string
	after, before string
	orderBy       string
	noCache       bool
	xml           bool
	cmd           *cobra.Command
}

func (fl *itemsFlags) register(cmd *cobra.Command, orderByHelp, noCacheHelp string) {
	fl.cmd = cmd
	fl.t.flags(cmd, true)
	f := cmd.Flags()
	f.IntVarP(&fl.maxItems, "max", "m", 0, "max_items: the latest MAX items")
	f.StringArrayVarP(&fl.ids, "item", "i", nil, "item id (repeatable)")
	f.IntVar(&fl.rsmMax, "rsm-max", 0, "RSM page size")
	f.StringVar(&fl.after, "after", "", "RSM: the page after CURSOR")
	f.StringVar(&fl.before, "before", "", "RSM: the page before CURSOR ('' for the last page)")
	f.IntVar(&fl.index, "index", 0, "RSM: the page starting at index N")
	f.StringVar(&fl.orderBy, "order-by", "", orderByHelp)
	f.BoolVar(&fl.noCache, "no-cache", false, noCacheHelp)
	f.BoolVar(&fl.xml, "xml", false, "print each item's XML (canonical wrapper and exact payload), one per line, instead of the table")
}

// request checks the flags and builds the request (without NoCache).
func (fl *itemsFlags) request() (*backendv2.PubSubItemsRequest, error) {
	f := fl.cmd.Flags()
	if fl.maxItems < 0 || fl.rsmMax < 0 || fl.index < 0 {
		return nil, usagef("-m, --rsm-max and --index must not be negative")
	}
	if fl.orderBy != "" && fl.orderBy != "creation" && fl.orderBy != "modification" {
		return nil, usagef("--order-by %q: want creation or modification", fl.orderBy)
	}
	req := &backendv2.PubSubItemsRequest{Profile: fl.t.profile, Service: fl.t.service, Node: fl.t.node,
		MaxItems: int32(fl.maxItems), ItemIds: fl.ids, OrderBy: fl.orderBy}
	if f.Changed("rsm-max") {
		v := int32(fl.rsmMax)
		req.RsmMax = &v
	}
	if f.Changed("index") {
		v := int32(fl.index)
		req.RsmIndex = &v
	}
	if f.Changed("after") {
		req.RsmAfter = &fl.after
	}
	if f.Changed("before") {
		req.RsmBefore = &fl.before
	}
	return req, nil
}

func (a *app) pubsubItemsCommand() *cobra.Command {
	var fl itemsFlags
	cmd := &cobra.Command{
		Use:   "items",
		Short: "Get items of a node",
		Long: `Get items of a node: the latest -m MAX, the items -i ID..., or a page with RSM
(--rsm-max, --after, --before, --index; --before '' asks for the last page).
The answer may come from the cache unless --no-cache.
With -o json: {"items":[{"id","publisher","xml"}…],"rsm":{"count","index","first","last"}|null,
"complete","from_cache","stale"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := fl.request()
			if err != nil {
				return err
			}
			req.NoCache = fl.noCache
			c, err := a.dial()
			if err != nil {
				return err
			}
			stream, err := c.pubsub().Items(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return c.check(err)
			}
			defer stream.Close()
			return c.check(a.printItems(stream, fl.xml))
		},
	}
	fl.register(cmd, "creation or modification (XEP-0413)", "bypass the cache")
	return cmd
}

// itemsStream is the client side of a streamed items answer.
type itemsStream interface {
	Receive() bool
	Msg() *backendv2.PubSubItemsChunk
	Err() error
}

// rsmJSON converts a reply's <set/> to its DESIGN §9 JSON shape.
func rsmJSON(r *backendv2.PubSubRSM) *xep0060.RSMJSON {
	if r == nil {
		return nil
	}
	j := &xep0060.RSMJSON{}
	if r.Count != nil {
		v := int(*r.Count)
		j.Count = &v
	}
	if r.Index != nil {
		v := int(*r.Index)
		j.Index = &v
	}
	if r.GetFirst() != "" {
		v := r.GetFirst()
		j.First = &v
	}
	if r.GetLast() != "" {
		v := r.GetLast()
		j.Last = &v
	}
	return j
}

func itemJSON(it *backendv2.PubSubItem) xep0060.ItemJSON {
	return xep0060.ItemJSON{ID: it.GetId(), Publisher: it.Publisher, XML: it.GetXml()}
}

// printItems prints a streamed items answer: -o json as DESIGN §9 says,
// written as the items arrive (the CLI holds one message at a time); with
// --xml each item's canonical XML, one per line, also as they arrive, and
// the notes on stderr; otherwise a table of id, publisher, date and a
// one-line summary of each payload (title and date of an Atom entry or any
// payload with such fields, else its text).
func (a *app) printItems(s itemsStream, raw bool) error {
	if !s.Receive() {
		if err := s.Err(); err != nil {
			return err
		}
		return errors.New("the daemon sent an empty items answer")
	}
	first := s.Msg()
	h := first.GetHeader()
	rsm := rsmJSON(h.GetRsm())
	// each calls f on every item, those of the first message first.
	each := func(f func(*backendv2.PubSubItem) error) error {
		for _, it := range first.GetItems() {
			if err := f(it); err != nil {
				return err
			}
		}
		for s.Receive() {
			for _, it := range s.Msg().GetItems() {
				if err := f(it); err != nil {
					return err
				}
			}
		}
		return s.Err()
	}
	if a.jsonOutput() {
		w := bufio.NewWriter(a.stdout)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		w.WriteString(`{"items":[`)
		n := 0
		err := each(func(it *backendv2.PubSubItem) error {
			if n > 0 {
				w.WriteByte(',')
			}
			n++
			return encodeCompact(enc, w, itemJSON(it))
		})
		if err != nil {
			w.Flush()
			fmt.Fprintln(a.stdout)
			return err
		}
		w.WriteString(`],"rsm":`)
		if err := encodeCompact(enc, w, rsm); err != nil {
			return err
		}
		fmt.Fprintf(w, `,"complete":%t,"from_cache":%t,"stale":%t}`+"\n", h.GetComplete(), h.GetFromCache(), h.GetStale())
		return w.Flush()
	}
	p := xep0060.PageJSON{RSM: rsm, Complete: h.GetComplete(), FromCache: h.GetFromCache(), Stale: h.GetStale()}
	n := 0
	if raw {
		err := each(func(it *backendv2.PubSubItem) error {
			n++
			_, err := fmt.Fprintln(a.stdout, it.GetXml())
			return err
		})
		if err != nil {
			return err
		}
	} else {
		err := each(func(it *backendv2.PubSubItem) error {
			p.Items = append(p.Items, itemJSON(it))
			return nil
		})
		if err != nil {
			return err
		}
		n = len(p.Items)
	}
	return a.printItemsTable(p, n, raw)
}

// encodeCompact writes v as JSON without the encoder's trailing newline.
func encodeCompact(enc *json.Encoder, w *bufio.Writer, v any) error {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	return err
}

// printItemsTable prints the table of p's items (unless raw: they were
// printed) and the notes about the answer of n items.
func (a *app) printItemsTable(p xep0060.PageJSON, n int, raw bool) error {
	notesTo := a.stdout
	if raw {
		notesTo = a.stderr
	} else {
		t := &table{header: []string{"ID", "PUBLISHER", "DATE", "SUMMARY"}}
		for _, it := range p.Items {
			pub := "-"
			if it.Publisher != nil {
				pub = cellText(*it.Publisher)
			}
			s := summarize(it.XML)
			t.add(cellText(it.ID), pub, orDash(s.Date), orDash(s.Title))
		}
		if err := t.write(a.stdout, termWidth(a.stdout, 120)); err != nil {
			return err
		}
	}
	var notes []string
	notes = append(notes, count(n, "item"))
	if p.RSM != nil {
		notes = append(notes, "rsm count="+intOr(p.RSM.Count)+" index="+intOr(p.RSM.Index)+" first="+strOr(p.RSM.First)+" last="+strOr(p.RSM.Last))
	}
	src := "from the service"
	if p.FromCache {
		src = "from the cache"
	}
	if p.Stale {
		src += " (stale: the profile is offline)"
	}
	notes = append(notes, src)
	if !p.Complete {
		notes = append(notes, "maybe incomplete")
	}
	_, err := fmt.Fprintln(notesTo, strings.Join(notes, "; "))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func intOr(v *int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func strOr(v *string) string {
	if v == nil {
		return "-"
	}
	return *v
}

func (a *app) pubsubPublishCommand() *cobra.Command {
	var t target
	var id string
	var opts []string
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish an item (its payload, one XML element, on stdin)",
		Long: `Publish an item whose payload (exactly one XML element) is read from stdin.
--option VAR=VALUE adds publish-options (e.g. pubsub#max_items=max); when the
node does not meet them, it is reconfigured with them and the publish retried.
With -o json: {"id"} (the id the service assigned).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := parseOptions(opts)
			if err != nil {
				return err
			}
			payload, err := io.ReadAll(a.stdin)
			if err != nil {
				return fmt.Errorf("read payload from stdin: %w", err)
			}
			if len(strings.TrimSpace(string(payload))) == 0 {
				return usagef("no payload on stdin (one XML element, e.g. echo '<x xmlns=\"urn:example\"/>' | backend pubsub publish …)")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.pubsub().Publish(cmd.Context(), connect.NewRequest(&backendv2.PubSubPublishRequest{
				Profile: t.profile, Service: t.service, Node: t.node, Id: id, Payload: string(payload), Options: options}))
			if err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"id": nullable(res.Msg.GetId())})
			}
			_, err = fmt.Fprintf(a.stdout, "published %s\n", res.Msg.GetId())
			return err
		},
	}
	t.flags(cmd, true)
	cmd.Flags().StringVarP(&id, "item", "i", "", "item id (default: assigned by the service)")
	cmd.Flags().StringArrayVar(&opts, "option", nil, "publish-option VAR=VALUE (repeatable)")
	return cmd
}

// printOK prints {"ok":true} or done.
func (a *app) printOK(what string) error {
	if a.jsonOutput() {
		return a.printJSON(map[string]any{"ok": true})
	}
	_, err := fmt.Fprintln(a.stdout, what)
	return err
}

func (a *app) pubsubRetractCommand() *cobra.Command {
	var t target
	var id string
	var notify bool
	cmd := &cobra.Command{
		Use:   "retract",
		Short: "Retract an item",
		Long:  `Retract an item (--notify asks the service to notify subscribers). With -o json: {"ok":true}.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			_, err = c.pubsub().Retract(cmd.Context(), connect.NewRequest(&backendv2.PubSubRetractRequest{
				Profile: t.profile, Service: t.service, Node: t.node, Id: id, Notify: notify}))
			if err != nil {
				return c.check(err)
			}
			return a.printOK("retracted " + id)
		},
	}
	t.flags(cmd, true)
	cmd.Flags().StringVarP(&id, "item", "i", "", "item id (required)")
	cmd.Flags().BoolVar(&notify, "notify", false, "notify subscribers of the retraction")
	cmd.MarkFlagRequired("item")
	return cmd
}

func (a *app) pubsubSubscribeCommand(verb, short string) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   verb,
		Short: short,
		Long:  short + `. With -o json: {"ok":true}.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			req := connect.NewRequest(&backendv2.PubSubSubscribeRequest{Profile: t.profile, Service: t.service, Node: t.node})
			if verb == "subscribe" {
				res, err := c.pubsub().Subscribe(cmd.Context(), req)
				if err != nil {
					return c.check(err)
				}
				return a.printOK(fmt.Sprintf("subscription to %s: %s", t.node, res.Msg.GetSubscription()))
			}
			if _, err := c.pubsub().Unsubscribe(cmd.Context(), req); err != nil {
				return c.check(err)
			}
			return a.printOK("unsubscribed from " + t.node)
		},
	}
	t.flags(cmd, true)
	return cmd
}

// subscriptionJSON is one subscription in `pubsub subscriptions -o json`.
type subscriptionJSON struct {
	Node         string  `json:"node"`
	JID          string  `json:"jid"`
	SubID        *string `json:"sub_id"`
	Subscription string  `json:"subscription"`
}

func (a *app) pubsubSubscriptionsCommand() *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "subscriptions",
		Short: "List the profile's subscriptions on a service",
		Long:  `List the profile's subscriptions (to -n NODE only). With -o json: {"subscriptions":[{"node","jid","sub_id","subscription"}…]}.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.pubsub().Subscriptions(cmd.Context(), connect.NewRequest(&backendv2.PubSubSubscriptionsRequest{
				Profile: t.profile, Service: t.service, Node: t.node}))
			if err != nil {
				return c.check(err)
			}
			out := struct {
				Subscriptions []subscriptionJSON `json:"subscriptions"`
			}{Subscriptions: []subscriptionJSON{}}
			for _, s := range res.Msg.GetSubscriptions() {
				j := subscriptionJSON{Node: s.GetNode(), JID: s.GetJid(), Subscription: s.GetSubscription()}
				if s.GetSubId() != "" {
					v := s.GetSubId()
					j.SubID = &v
				}
				out.Subscriptions = append(out.Subscriptions, j)
			}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(w, "NODE\tJID\tSUBSCRIPTION\tSUBID\n")
			for _, s := range out.Subscriptions {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Node, s.JID, s.Subscription, strOr(s.SubID))
			}
			return w.Flush()
		},
	}
	t.flags(cmd, false)
	return cmd
}

func (a *app) pubsubNodeCommand(verb, short string) *cobra.Command {
	var t target
	var opts []string
	long := short + `. With -o json: {"ok":true}.`
	if verb == "config" {
		long = short + `. With -o json and no --option: {"fields":[{"var","type","label","values"}…]};
with options: {"ok":true}.`
	}
	cmd := &cobra.Command{
		Use:   verb,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := parseOptions(opts)
			if err != nil {
				return err
			}
			if len(options) > 0 && (verb == "delete" || verb == "purge") {
				return usagef("node %s takes no --option", verb)
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			req := connect.NewRequest(&backendv2.PubSubNodeRequest{Profile: t.profile, Service: t.service, Node: t.node, Options: options})
			ps := c.pubsub()
			switch verb {
			case "create":
				_, err = ps.CreateNode(cmd.Context(), req)
			case "delete":
				_, err = ps.DeleteNode(cmd.Context(), req)
			case "purge":
				_, err = ps.PurgeNode(cmd.Context(), req)
			case "config":
				res, cerr := ps.ConfigureNode(cmd.Context(), req)
				if cerr != nil {
					return c.check(cerr)
				}
				if len(options) == 0 {
					return a.printFields(res.Msg.GetFields())
				}
				return a.printOK("configured " + t.node)
			}
			if err != nil {
				return c.check(err)
			}
			return a.printOK(verb + " " + t.node + ": done")
		},
	}
	t.flags(cmd, true)
	if verb == "create" || verb == "config" {
		cmd.Flags().StringArrayVar(&opts, "option", nil, "configuration field VAR=VALUE (repeatable)")
	}
	return cmd
}

func (a *app) printFields(fs []*backendv2.PubSubField) error {
	out := struct {
		Fields []eventjson.Field `json:"fields"`
	}{Fields: []eventjson.Field{}}
	for _, f := range fs {
		out.Fields = append(out.Fields, eventjson.FieldOf(f))
	}
	if a.jsonOutput() {
		return a.printJSON(out)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(w, "VAR\tTYPE\tVALUES\tLABEL\n")
	for _, f := range out.Fields {
		if f.Var == "" {
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Var, strOr(f.Type), strings.Join(f.Values, ","), strOr(f.Label))
	}
	return w.Flush()
}
