package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core/eventjson"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's version, uptime, profiles, plugins and counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.daemon().Status(cmd.Context(), connect.NewRequest(&backendv2.StatusRequest{}))
			if err != nil {
				return c.check(err)
			}
			return a.printStatus(res.Msg)
		},
	}
}

// statusJSON is the JSON shape of `backend status` (DESIGN §9).
type statusJSON struct {
	Version  string           `json:"version"`
	UptimeS  int64            `json:"uptime_s"`
	Profiles []profileState   `json:"profiles"`
	Plugins  []pluginState    `json:"plugins"`
	Counters map[string]int64 `json:"counters"`
	// TCPAddress and TLSFingerprint describe the TCP listener (null without).
	TCPAddress     *string `json:"tcp_address"`
	TLSFingerprint *string `json:"tls_fingerprint"`
	// Build is an addition to DESIGN §9: the daemon's build (as in
	// `backend version`), null from a daemon too old to say.
	Build *buildJSON `json:"build"`
}

type profileState struct {
	Name    string `json:"name"`
	JID     string `json:"jid"`
	State   string `json:"state"`
	IQsSent int64  `json:"iqs_sent"`
}

type pluginState struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	PID     *int64 `json:"pid"` // null for built-in plugins
}

func (a *app) printStatus(m *backendv2.StatusResponse) error {
	out := statusJSON{Version: m.GetVersion(), UptimeS: m.GetUptimeS(), Profiles: []profileState{}, Plugins: []pluginState{}, Counters: m.GetCounters(),
		TCPAddress: m.TcpAddress, TLSFingerprint: m.TlsFingerprint, Build: buildFromAPI(m.GetBuild())}
	if out.Counters == nil {
		out.Counters = map[string]int64{}
	}
	for _, p := range m.GetProfiles() {
		out.Profiles = append(out.Profiles, profileState{Name: p.GetName(), JID: p.GetJid(), State: p.GetState(), IQsSent: p.GetIqsSent()})
	}
	for _, p := range m.GetPlugins() {
		ps := pluginState{Name: p.GetName(), Version: p.GetVersion(), State: p.GetState()}
		if p.GetPid() != 0 {
			pid := p.GetPid()
			ps.PID = &pid
		}
		out.Plugins = append(out.Plugins, ps)
	}
	if a.jsonOutput() {
		return a.printJSON(out)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(w, "version\t%s\n", out.Version)
	if b := out.Build; b != nil {
		dirty := ""
		if b.Dirty {
			dirty = " (modified work tree)"
		}
		fmt.Fprintf(w, "revision\t%s%s\ngo\t%s %s\n", strOr(b.Revision), dirty, b.GoVersion, b.Platform)
	}
	fmt.Fprintf(w, "uptime\t%s\n", time.Duration(out.UptimeS)*time.Second)
	if out.TCPAddress != nil {
		fmt.Fprintf(w, "tcp\t%s\n", *out.TCPAddress)
	}
	if out.TLSFingerprint != nil {
		fmt.Fprintf(w, "tls fingerprint\t%s\n", *out.TLSFingerprint)
	}
	fmt.Fprintf(w, "\nPROFILE\tJID\tSTATE\tIQS SENT\n")
	for _, p := range out.Profiles {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", p.Name, p.JID, p.State, p.IQsSent)
	}
	fmt.Fprintf(w, "\nPLUGIN\tVERSION\tSTATE\tPID\n")
	for _, p := range out.Plugins {
		pid := "-"
		if p.PID != nil {
			pid = fmt.Sprint(*p.PID)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Version, p.State, pid)
	}
	fmt.Fprintf(w, "\nCOUNTER\tVALUE\n")
	names := make([]string, 0, len(out.Counters))
	for k := range out.Counters {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "%s\t%d\n", k, out.Counters[k])
	}
	return w.Flush()
}

func (a *app) triggersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "triggers", Short: "Inspect the trigger bus"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List every trigger point with its resolved handler chain (first runs first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.daemon().ListTriggers(cmd.Context(), connect.NewRequest(&backendv2.ListTriggersRequest{}))
			if err != nil {
				return c.check(err)
			}
			type handler struct {
				Owner    string `json:"owner"`
				Priority int64  `json:"priority"`
				Seq      uint64 `json:"seq"`
			}
			type point struct {
				ID       string    `json:"id"`
				Kind     string    `json:"kind"`
				Doc      string    `json:"doc"`
				Handlers []handler `json:"handlers"`
			}
			out := struct {
				Points []point `json:"points"`
			}{Points: []point{}}
			for _, p := range res.Msg.GetPoints() {
				pt := point{ID: p.GetId(), Kind: p.GetKind(), Doc: p.GetDoc(), Handlers: []handler{}}
				for _, h := range p.GetHandlers() {
					pt.Handlers = append(pt.Handlers, handler{h.GetOwner(), h.GetPriority(), h.GetSeq()})
				}
				out.Points = append(out.Points, pt)
			}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(w, "POINT\tKIND\tHANDLERS (priority:owner, in run order)\n")
			for _, p := range out.Points {
				chain := "-"
				if len(p.Handlers) > 0 {
					chain = ""
					for i, h := range p.Handlers {
						if i > 0 {
							chain += " → "
						}
						chain += fmt.Sprintf("%d:%s", h.Priority, h.Owner)
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", p.ID, p.Kind, chain)
			}
			return w.Flush()
		},
	})
	return cmd
}

func (a *app) eventsCommand() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream daemon events (one JSON object per line with -o json) until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			stream, err := c.daemon().Events(ctx, connect.NewRequest(&backendv2.EventsRequest{Profile: profile}))
			if err != nil {
				return c.check(err)
			}
			defer stream.Close()
			for stream.Receive() {
				if err := a.printEvent(stream.Msg()); err != nil {
					return err
				}
			}
			return c.check(stream.Err())
		},
	}
	cmd.Flags().StringVarP(&profile, "profile", "p", "", "only events of this profile (and daemon-wide ones)")
	return cmd
}

// printEvent writes {"type","profile","time",…fields}: profile is null for
// daemon-wide events. The stream's `started` and kinds of a newer daemon
// are skipped.
func (a *app) printEvent(ev *backendv2.Event) error {
	typ, obj, ok := eventjson.Fields(ev)
	if !ok || typ == eventjson.TypeStarted {
		return nil
	}
	obj["type"] = typ
	obj["profile"] = nil
	if ev.GetProfile() != "" {
		obj["profile"] = ev.GetProfile()
	}
	obj["time"] = ev.GetTime().AsTime().UTC().Format(time.RFC3339Nano)
	if a.jsonOutput() {
		return a.printJSON(obj)
	}
	delete(obj, "type")
	delete(obj, "time")
	p := obj["profile"]
	delete(obj, "profile")
	rest, _ := json.Marshal(obj)
	if p == nil {
		p = "-"
	}
	_, err := fmt.Fprintf(a.stdout, "%s %s %v %s\n", ev.GetTime().AsTime().UTC().Format(time.RFC3339), typ, p, rest)
	return err
}
