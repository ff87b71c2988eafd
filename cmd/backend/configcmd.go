package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"example.org/backend/core/config"
	"example.org/backend/core/params"
	"example.org/backend/core/profiles"
	"example.org/backend/plugins/pubsubcache"
)

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration helpers"}
	ref := &cobra.Command{
		Use:   "reference",
		Short: "Print the configuration reference (Markdown, or JSON with -o json), generated from the code",
		Long: `Print every configuration key (name, environment variable, type, default,
meaning) and every per-profile parameter known without a running daemon
(the core's, the built-in plugins' and the first-party plugins'): Markdown
by default (docs/configuration.md is this output), JSON with -o json:
{"keys":[{"name","env","type","default","help"}…],"params":[{"key","owner","type",
"default","bounds","secret","needs_reconnect","help"}…]}.`,
		Example: `  backend config reference > docs/configuration.md
  backend config reference -o json | jq -r '.params[].key'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.jsonOutput() {
				return a.writeConfigReferenceJSON()
			}
			return writeConfigReference(a.stdout)
		},
	}
	cmd.AddCommand(ref)
	var o config.Overrides
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration as TOML (file, environment and flags applied)",
		Long: `Print the effective configuration: documented defaults, then the file,
BACKEND_* variables and flags applied, as a TOML file the daemon accepts
(an empty value means off or the default), or with -o json as one object:
{"file","params",…one key per configuration key, dotted as in the reference}.`,
		Example: `  backend config show
  backend config show --config /etc/backend/config.toml -o json | jq -r .socket
  backend config show > config.toml   # a starting point`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Socket = a.socket
			cfg, err := config.Load(o, a.lookup)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				m := map[string]any{"file": nullable(cfg.File), "params": cfg.Params}
				for _, k := range config.Keys {
					m[k.Name] = configValue(cfg.Value(k))
				}
				return a.printJSON(m)
			}
			return writeConfigTOML(a.stdout, cfg)
		},
	}
	show.Flags().StringVar(&o.File, "config", "", "configuration file")
	show.Flags().StringVar(&o.DataDir, "data-dir", "", "data directory")
	cmd.AddCommand(show)
	return cmd
}

// configValue is a key's value for JSON and TOML: lists never nil.
func configValue(v any) any {
	if l, ok := v.([]string); ok && l == nil {
		return []string{}
	}
	return v
}

// writeConfigTOML writes cfg as a TOML file: top-level keys first, then
// one table per section ([log], [api], …), then [params].
func writeConfigTOML(w io.Writer, cfg config.Config) error {
	fmt.Fprintf(w, "# Effective configuration: defaults, %s, BACKEND_* variables and flags applied.\n", fileOrNone(cfg.File))
	fmt.Fprintf(w, "# An empty string means off (or the default); see `backend config reference`.\n\n")
	top := map[string]any{}
	tables := map[string]map[string]any{}
	for _, k := range config.Keys {
		v := configValue(cfg.Value(k))
		section, name, dotted := strings.Cut(k.Name, ".")
		if !dotted {
			top[k.Name] = v
			continue
		}
		if tables[section] == nil {
			tables[section] = map[string]any{}
		}
		tables[section][name] = v
	}
	tree := map[string]any{}
	for k, v := range top {
		tree[k] = v
	}
	for k, v := range tables {
		tree[k] = v
	}
	params := map[string]string{}
	for k, v := range cfg.Params {
		params[k] = v
	}
	tree["params"] = params
	enc := toml.NewEncoder(w)
	enc.Indent = ""
	return enc.Encode(tree)
}

func fileOrNone(f string) string {
	if f == "" {
		return "no configuration file"
	}
	return f
}

// writeConfigReferenceJSON is `config reference -o json`.
func (a *app) writeConfigReferenceJSON() error {
	decls, err := profileParamDecls()
	if err != nil {
		return fmt.Errorf("collect the per-profile parameters: %w", err)
	}
	type keyJSON struct {
		Name    string  `json:"name"`
		Env     string  `json:"env"`
		Type    string  `json:"type"`
		Default *string `json:"default"`
		Help    string  `json:"help"`
	}
	type paramRefJSON struct {
		Key            string  `json:"key"`
		Owner          string  `json:"owner"`
		Type           string  `json:"type"`
		Default        any     `json:"default"`
		Bounds         *string `json:"bounds"`
		Secret         bool    `json:"secret"`
		NeedsReconnect bool    `json:"needs_reconnect"`
		Help           string  `json:"help"`
	}
	out := struct {
		Keys   []keyJSON      `json:"keys"`
		Params []paramRefJSON `json:"params"`
	}{Keys: []keyJSON{}, Params: []paramRefJSON{}}
	for _, k := range config.Keys {
		out.Keys = append(out.Keys, keyJSON{Name: k.Name, Env: k.Env(), Type: k.Type, Default: nullableStr(k.Default), Help: k.Help})
	}
	for _, d := range decls {
		p := paramRefJSON{Key: d.Key(), Owner: d.Owner, Type: string(d.Type), Default: profiles.TypedValue(d.Type, d.Default),
			Bounds: nullableStr(d.Bounds()), Secret: d.Secret(), NeedsReconnect: d.NeedsReconnect, Help: d.Help}
		if d.Secret() {
			p.Default = nil
		}
		out.Params = append(out.Params, p)
	}
	return a.printJSON(out)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// writeConfigReference renders the keys of config.Keys and the per-profile
// parameters of the core, the built-in and the first-party plugins as
// Markdown.
func writeConfigReference(w io.Writer) error {
	decls, err := profileParamDecls()
	if err != nil {
		return fmt.Errorf("collect the per-profile parameters: %w", err)
	}
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated by `backend config reference` from the code; do not edit by hand.\n\n")
	b.WriteString("## Daemon configuration\n\n")
	b.WriteString("Sources, later ones winning: documented defaults, the TOML file (`--config`, `$BACKEND_CONFIG`, else `$XDG_CONFIG_HOME/backend/config.toml` when it exists), `BACKEND_*` environment variables, command-line flags (`--data-dir`, `--socket`). An unknown key in the file refuses start-up.\n\n")
	b.WriteString("| key | environment | default | meaning |\n|---|---|---|---|\n")
	for _, k := range config.Keys {
		def := k.Default
		if def == "" {
			def = "(empty: off)"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", k.Name, k.Env(), def, k.Help)
	}
	b.WriteString("\nKeys under `[params]` set daemon-wide defaults of per-profile parameters (`category.name`, listed below); a profile's own value wins over them, and they win over the declared default. They are checked once plugins have declared their parameters.\n\n")
	b.WriteString("Example:\n\n```toml\ndata_dir = \"/var/lib/backend\"\n\n[log]\nlevel = \"debug\"\n\n[api]\ntcp_address = \"127.0.0.1:7777\"\n\n[params]\n\"cache.item_limit\" = 5000\n```\n")
	b.WriteString("\n## Per-profile parameters\n\n")
	b.WriteString("Declared by the core, the built-in plugins and the first-party external plugins; a third-party plugin adds its own while it runs. See a profile's values with `backend profile params NAME`, change one with `backend profile set NAME KEY VALUE`. \"needs reconnect\": a change takes effect on the profile's next connection.\n")
	writeParamTables(&b, decls)
	_, err = io.WriteString(w, b.String())
	return err
}

// profileParamDecls returns the per-profile parameters known without a
// running daemon: the core's connection parameters, the pubsub cache's and
// those of the first-party external plugins, checked and put in canonical
// form by a fresh registry, sorted by key.
func profileParamDecls() ([]params.Decl, error) {
	reg := params.NewRegistry()
	if err := profiles.DeclareConnection(reg); err != nil {
		return nil, fmt.Errorf("declare the connection parameters: %w", err)
	}
	if err := reg.Declare(pubsubcache.ImportName, pubsubcache.Declarations()...); err != nil {
		return nil, fmt.Errorf("declare the cache parameters: %w", err)
	}
	plugins := firstPartyPlugins()
	names := make([]string, 0, len(plugins))
	for name := range plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := reg.Declare(name, params.FromSDK(plugins[name].Params)...); err != nil {
			return nil, fmt.Errorf("declare the parameters of plugin %s: %w", name, err)
		}
	}
	return reg.All(), nil
}

// writeParamTables writes one Markdown table per category of decls (sorted
// by key, hence grouped by category).
func writeParamTables(b *strings.Builder, decls []params.Decl) {
	for i, d := range decls {
		if i == 0 || decls[i-1].Category != d.Category {
			fmt.Fprintf(b, "\n### `%s` (declared by %s)\n\n", d.Category, categoryOwners(decls, d.Category))
			b.WriteString("| key | type | default | bounds or choices | needs reconnect | help |\n|---|---|---|---|---|---|\n")
		}
		def := "`" + d.Default + "`"
		if d.Default == "" {
			def = "(empty)"
		}
		if d.Secret() {
			def = "(none)"
		}
		reconnect := "no"
		if d.NeedsReconnect {
			reconnect = "yes"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s | %s |\n",
			d.Key(), d.Type, def, cell(d.Bounds()), reconnect, cell(d.Help))
	}
}

// categoryOwners lists, sorted, the owners declaring parameters of category.
func categoryOwners(decls []params.Decl, category string) string {
	seen := map[string]bool{}
	var owners []string
	for _, d := range decls {
		if d.Category == category && !seen[d.Owner] {
			seen[d.Owner] = true
			owners = append(owners, d.Owner)
		}
	}
	sort.Strings(owners)
	return strings.Join(owners, ", ")
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", " ")
}
