package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
)

// app holds the global flags and the standard streams of one invocation.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	socket         string // --socket
	output         string // -o
	tokenFile      string // --token-file
	tlsFingerprint string // --tls-fingerprint
	tlsCAFile      string // --tls-ca-file
	lookup         func(string) (string, bool)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, lookup: os.LookupEnv}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "backend",
		Short:         "A plugin-based XMPP backend daemon with a transparent pubsub cache",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       build().String(),
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return usagef("-o: %q is not one of table, json", a.output)
			}
			return nil
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", "", "API socket path, or http://HOST:PORT for the TCP listener (default $BACKEND_SOCKET, else $XDG_RUNTIME_DIR/backend.sock)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&a.tokenFile, "token-file", "", "token file for a TCP --socket URL (default $BACKEND_TOKEN_FILE)")
	pf.StringVar(&a.tlsFingerprint, "tls-fingerprint", "", "SHA-256 of the daemon's TLS certificate for an https:// --socket (shown by `status` and logged by `serve`; default $BACKEND_TLS_FINGERPRINT)")
	pf.StringVar(&a.tlsCAFile, "tls-ca-file", "", "CA certificate (PEM) to verify an https:// --socket instead of the system roots (default $BACKEND_TLS_CA_FILE)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(
		a.serveCommand(),
		a.statusCommand(),
		a.versionCommand(),
		a.manCommand(),
		a.triggersCommand(),
		a.eventsCommand(),
		a.migrateCommand(),
		a.backupCommand(),
		a.restoreCommand(),
		a.configCommand(),
		a.profileCommand(),
		a.pluginsCommand(),
		a.pluginServeCommand(),
		a.pubsubCommand(),
		a.cacheCommand(),
	)
	root.InitDefaultCompletionCmd()
	requireSubcommand(root)
	a.registerCompletions(root)
	addExamples(root)
	return root
}

// requireSubcommand makes a group command without its own action refuse
// unknown or missing verbs with a usage error.
func requireSubcommand(c *cobra.Command) {
	if c.HasSubCommands() && c.RunE == nil && c.Run == nil {
		c.Args = cobra.ArbitraryArgs
		c.SuggestionsMinimumDistance = 2
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				if !cmd.HasParent() {
					return cmd.Help()
				}
				return usagef("missing command for %q (one of: %s)", cmd.CommandPath(), strings.Join(subNames(cmd), ", "))
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return usagef("unknown command %q for %q: did you mean %s? (one of: %s)", args[0], cmd.CommandPath(),
					strings.Join(s, " or "), strings.Join(subNames(cmd), ", "))
			}
			return usagef("unknown command %q for %q (one of: %s)", args[0], cmd.CommandPath(), strings.Join(subNames(cmd), ", "))
		}
	}
	for _, s := range c.Commands() {
		requireSubcommand(s)
	}
}

func subNames(c *cobra.Command) []string {
	var out []string
	for _, s := range c.Commands() {
		if !s.Hidden {
			out = append(out, s.Name())
		}
	}
	return out
}

// isCobraUsage recognises cobra's own usage errors, which are not typed.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires ", "required flag", "invalid argument", "flag needs an argument", "bad flag syntax"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// jsonOutput reports whether -o json was asked for.
func (a *app) jsonOutput() bool { return a.output == "json" }

// printJSON writes v as one JSON object and a newline.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printError reports err: with -o json as {"error":{"code","message"}} on
// stdout, otherwise as text on stderr; a usage error names the help of
// the command it happened in (cmd, nil for the root).
func (a *app) printError(err error, exit int, cmd *cobra.Command) {
	code := "failed"
	switch exit {
	case exitUsage:
		code = "usage"
	case exitUnreachable:
		code = "unreachable"
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		code = ce.Code().String()
		msg = ce.Message()
	}
	if a.jsonOutput() {
		a.printJSON(map[string]any{"error": map[string]any{"code": code, "message": msg}})
		return
	}
	fmt.Fprintf(a.stderr, "backend: %s\n", msg)
	if exit == exitUsage {
		path := "backend"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", path)
	}
}
