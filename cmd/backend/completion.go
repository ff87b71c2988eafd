package main

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core/params"
)

// Dynamic shell completion (`backend completion bash|zsh|fish`): profile
// names, parameter keys and values, cached nodes, services and types, and
// plugin names are asked of the running daemon (2 s at most); without a
// daemon, parameter keys come from the declarations built into the binary
// and the rest completes to nothing.

// completionTimeout bounds the daemon calls of one completion.
const completionTimeout = 2 * time.Second

type completer func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

// filter keeps the candidates starting with prefix, sorted and unique.
func filter(cands []string, prefix string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) completionContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), completionTimeout)
}

// profileNames lists the daemon's profiles.
func (a *app) profileNames() []string {
	c, err := a.dial()
	if err != nil {
		return nil
	}
	ctx, cancel := a.completionContext()
	defer cancel()
	res, err := c.profiles().List(ctx, connect.NewRequest(&backendv2.ListProfilesRequest{}))
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range res.Msg.GetProfiles() {
		out = append(out, p.GetName())
	}
	return out
}

// paramDecls are the parameters of profile as the daemon knows them
// (third-party plugins' included), else those built into the binary.
func (a *app) paramDecls(profile string) []params.Decl {
	if c, err := a.dial(); err == nil {
		ctx, cancel := a.completionContext()
		defer cancel()
		if res, err := c.profiles().Params(ctx, connect.NewRequest(&backendv2.ProfileParamsRequest{Name: profile})); err == nil {
			var out []params.Decl
			for _, p := range res.Msg.GetParams() {
				cat, name, _ := strings.Cut(p.GetKey(), ".")
				d := params.Decl{Category: cat, Name: name, Type: params.Type(p.GetType())}
				if d.Type == params.TypeEnum {
					// Bounds reads "one of: a, b".
					if list, ok := strings.CutPrefix(p.GetBounds(), "one of: "); ok {
						d.Choices = strings.Split(list, ", ")
					}
				}
				out = append(out, d)
			}
			return out
		}
	}
	decls, _ := profileParamDecls()
	return decls
}

// cachedNodes lists the cache's nodes (of profile when set).
func (a *app) cachedNodes(profile string) []*backendv2.PubSubCacheNode {
	c, err := a.dial()
	if err != nil {
		return nil
	}
	ctx, cancel := a.completionContext()
	defer cancel()
	res, err := c.pubsubCache().Status(ctx, connect.NewRequest(&backendv2.PubSubCacheStatusRequest{Profile: profile}))
	if err != nil {
		return nil
	}
	return res.Msg.GetNodes()
}

// flagString is the value of a string or string-array flag ("" when unset
// or repeated).
func flagString(cmd *cobra.Command, name string) string {
	f := cmd.Flags().Lookup(name)
	if f == nil || !f.Changed {
		return ""
	}
	if vs, err := cmd.Flags().GetStringArray(name); err == nil {
		if len(vs) == 1 {
			return vs[0]
		}
		return ""
	}
	return f.Value.String()
}

func (a *app) completeProfiles(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return filter(a.profileNames(), toComplete)
}

// completeNodeField completes -n, -s or -t from the cached nodes, of the
// -p profile when one is given.
func (a *app) completeNodeField(field func(*backendv2.PubSubCacheNode) string) completer {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, n := range a.cachedNodes(flagString(cmd, "profile")) {
			if v := field(n); v != "" {
				out = append(out, v)
			}
		}
		return filter(out, toComplete)
	}
}

// completeProfileArgs completes NAME, then KEY (profile get/set), then the
// VALUE of a bool or enum parameter (profile set).
func (a *app) completeProfileArgs(withKey, withValue bool) completer {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		switch {
		case len(args) == 0:
			return filter(a.profileNames(), toComplete)
		case len(args) == 1 && withKey:
			var keys []string
			for _, d := range a.paramDecls(args[0]) {
				keys = append(keys, d.Key())
			}
			return filter(keys, toComplete)
		case len(args) == 2 && withValue:
			for _, d := range a.paramDecls(args[0]) {
				if d.Key() != args[1] {
					continue
				}
				switch d.Type {
				case params.TypeBool:
					return filter([]string{"true", "false"}, toComplete)
				case params.TypeEnum:
					return filter(d.Choices, toComplete)
				case params.TypeSecret:
					return []string{"-"}, cobra.ShellCompDirectiveNoFileComp
				}
			}
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

func (a *app) completePlugins(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.dial()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := a.completionContext()
	defer cancel()
	res, err := c.plugins().List(ctx, connect.NewRequest(&backendv2.ListPluginsRequest{}))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, p := range res.Msg.GetPlugins() {
		out = append(out, p.GetName())
	}
	return filter(out, toComplete)
}

// registerCompletions installs the completions on every command of root.
func (a *app) registerCompletions(root *cobra.Command) {
	fixed := func(vs ...string) completer {
		return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return filter(vs, toComplete)
		}
	}
	_ = root.RegisterFlagCompletionFunc("output", fixed("table", "json"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		flags := map[string]completer{
			"profile":  a.completeProfiles,
			"node":     a.completeNodeField(func(n *backendv2.PubSubCacheNode) string { return n.GetNode() }),
			"service":  a.completeNodeField(func(n *backendv2.PubSubCacheNode) string { return n.GetService() }),
			"type":     a.completeNodeField(func(n *backendv2.PubSubCacheNode) string { return n.GetType() }),
			"subtype":  a.completeNodeField(func(n *backendv2.PubSubCacheNode) string { return n.GetSubtype() }),
			"order-by": nil,
		}
		for name, f := range flags {
			if c.Flags().Lookup(name) == nil || c.Flags().Lookup(name) == c.InheritedFlags().Lookup(name) {
				continue
			}
			if name == "order-by" {
				if c.Name() == "search" {
					f = fixed("creation", "modification", "item_id", "rank", "creation:desc", "modification:desc")
				} else {
					f = fixed("creation", "modification")
				}
			}
			_ = c.RegisterFlagCompletionFunc(name, f)
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	set := func(path string, f completer) {
		if c, _, err := root.Find(strings.Fields(path)); err == nil && c.CommandPath() == "backend "+path {
			c.ValidArgsFunction = f
		}
	}
	for _, verb := range []string{"show", "delete", "params", "connect", "disconnect"} {
		set("profile "+verb, a.completeProfileArgs(false, false))
	}
	set("profile get", a.completeProfileArgs(true, false))
	set("profile set", a.completeProfileArgs(true, true))
	set("plugins restart", a.completePlugins)
}
