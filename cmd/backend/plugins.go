package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core/daemon"
	"example.org/backend/core/pluginhost"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/microblog"
	"example.org/backend/plugin-sdk/plugins/pep"
)

// firstPartyPlugins are the external plugins shipped in this binary; the
// daemon runs each out of process by re-executing the binary with the
// hidden plugin subcommand: microblog (XEP-0277 posts and comments) and
// pep (XEP-0402 bookmarks, XEP-0084 avatar metadata, XEP-0292 vCard4,
// XEP-0172 nicknames).
func firstPartyPlugins() map[string]*sdk.Plugin {
	return map[string]*sdk.Plugin{"microblog": microblog.New(), "pep": pep.New()}
}

// pluginServeCommand is the hidden subcommand a plugin process runs. It
// must print nothing on stdout before the go-plugin handshake.
func (a *app) pluginServeCommand() *cobra.Command {
	return &cobra.Command{
		Use:    daemon.PluginSubcommand + " NAME",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return pluginhost.ServeBuiltin(args[0], firstPartyPlugins())
		},
	}
}

func (c *conn) plugins() backendv2connect.PluginServiceClient {
	return backendv2connect.NewPluginServiceClient(c.http, c.baseURL, c.opts...)
}

// pluginJSON is one plugin in `plugins list` (DESIGN §9).
type pluginJSON struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	State      string   `json:"state"`
	PID        *int64   `json:"pid"`
	Analysers  []string `json:"analysers"`
	Restarts   int64    `json:"restarts"`
	FirstParty bool     `json:"first_party"`
	LastError  *string  `json:"last_error"`
}

func toPluginJSON(p *backendv2.ExternalPlugin) pluginJSON {
	out := pluginJSON{Name: p.GetName(), Version: p.GetVersion(), State: p.GetState(), Analysers: p.GetAnalysers(),
		Restarts: p.GetRestarts(), FirstParty: p.GetFirstParty()}
	if out.Analysers == nil {
		out.Analysers = []string{}
	}
	if pid := p.GetPid(); pid != 0 {
		out.PID = &pid
	}
	if e := p.GetLastError(); e != "" {
		out.LastError = &e
	}
	return out
}

func (a *app) pluginsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Short: "External plugins (analysers and parsers running out of process)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the external plugins with their state, process and analysers",
		Long: `List the external plugins: the first-party ones built into the binary, and
the executables backend-plugin-NAME found in plugins.dirs when the daemon
started (restart the daemon to pick up a new one).
With -o json: {"plugins":[{"name","version","state","pid","analysers","restarts","first_party","last_error"}…]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.plugins().List(cmd.Context(), connect.NewRequest(&backendv2.ListPluginsRequest{}))
			if err != nil {
				return c.check(err)
			}
			out := struct {
				Plugins []pluginJSON `json:"plugins"`
			}{Plugins: []pluginJSON{}}
			for _, p := range res.Msg.GetPlugins() {
				out.Plugins = append(out.Plugins, toPluginJSON(p))
			}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(w, "PLUGIN\tVERSION\tSTATE\tPID\tRESTARTS\tANALYSERS\n")
			for _, p := range out.Plugins {
				pid := "-"
				if p.PID != nil {
					pid = fmt.Sprint(*p.PID)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.Version, p.State, pid, p.Restarts, strings.Join(p.Analysers, ","))
			}
			return w.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "restart NAME",
		Short: "Restart an external plugin (also one that failed)",
		Long: `Restart an external plugin: its process is stopped and its executable
started again (a rebuilt plugin runs its new version). A plugin installed
after the daemon started needs a restart of the daemon instead.
With -o json: the plugin's object as in 'plugins list'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.plugins().Restart(cmd.Context(), connect.NewRequest(&backendv2.RestartPluginRequest{Name: args[0]}))
			if err != nil {
				return c.check(err)
			}
			p := toPluginJSON(res.Msg.GetPlugin())
			if a.jsonOutput() {
				return a.printJSON(p)
			}
			_, err = fmt.Fprintf(a.stdout, "plugin %s: %s\n", p.Name, p.State)
			return err
		},
	})
	return cmd
}
