package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core/params"
	"example.org/backend/core/profiles"
)

func (c *conn) profiles() backendv2connect.ProfileServiceClient {
	return backendv2connect.NewProfileServiceClient(c.http, c.baseURL, c.opts...)
}

// profileJSON is one profile in `profile list` and `profile show` (DESIGN §9).
type profileJSON struct {
	Name        string `json:"name"`
	JID         string `json:"jid"`
	State       string `json:"state"`
	Autoconnect bool   `json:"autoconnect"`
}

// paramJSON is one parameter in `profile params`, `profile show`,
// `profile get` and `profile set` (DESIGN §9). Value and Default are typed
// (number, boolean, array or string); a secret's value is "********" when
// set and null when not, its default null. Bounds is null when there are
// none.
type paramJSON struct {
	Key            string  `json:"key"`
	Type           string  `json:"type"`
	Value          any     `json:"value"`
	Default        any     `json:"default"`
	Source         string  `json:"source"`
	Bounds         *string `json:"bounds"`
	Help           string  `json:"help"`
	Secret         bool    `json:"secret"`
	NeedsReconnect bool    `json:"needs_reconnect"`
}

// sessionJSON is the live stream in `profile show` (null without one).
type sessionJSON struct {
	JID             string   `json:"jid"`
	Endpoint        string   `json:"endpoint"`
	EndpointOrigin  string   `json:"endpoint_origin"`
	DirectTLS       bool     `json:"direct_tls"`
	Address         string   `json:"address"`
	TLSVersion      string   `json:"tls_version"`
	TLSCipherSuite  string   `json:"tls_cipher_suite"`
	SASLMechanism   string   `json:"sasl_mechanism"`
	ChannelBinding  *string  `json:"channel_binding"`
	ConnectedAt     string   `json:"connected_at"`
	FailedEndpoints []string `json:"failed_endpoints"`
}

func sessionOut(m *backendv2.SessionInfo) *sessionJSON {
	if m == nil {
		return nil
	}
	out := &sessionJSON{
		JID: m.GetJid(), Endpoint: m.GetEndpoint(), EndpointOrigin: m.GetEndpointOrigin(), DirectTLS: m.GetDirectTls(),
		Address: m.GetAddress(), TLSVersion: m.GetTlsVersion(), TLSCipherSuite: m.GetTlsCipherSuite(),
		SASLMechanism: m.GetSaslMechanism(), ConnectedAt: m.GetConnectedAt().AsTime().UTC().Format(time.RFC3339),
		FailedEndpoints: append([]string{}, m.GetFailedEndpoints()...),
	}
	if cb := m.GetChannelBinding(); cb != "" {
		out.ChannelBinding = &cb
	}
	return out
}

func profileOut(p *backendv2.ProfileInfo) profileJSON {
	return profileJSON{Name: p.GetName(), JID: p.GetJid(), State: p.GetState(), Autoconnect: p.GetAutoconnect()}
}

func paramOut(p *backendv2.ProfileParam) paramJSON {
	t := params.Type(p.GetType())
	out := paramJSON{
		Key: p.GetKey(), Type: p.GetType(), Value: profiles.TypedValue(t, p.GetValue()),
		Default: profiles.TypedValue(t, p.GetDefaultValue()), Source: p.GetSource(), Help: p.GetHelp(),
		Secret: p.GetSecret(), NeedsReconnect: p.GetNeedsReconnect(),
	}
	if p.GetSecret() {
		out.Default = nil
	}
	if b := p.GetBounds(); b != "" {
		out.Bounds = &b
	}
	return out
}

func paramsOut(ps []*backendv2.ProfileParam) []paramJSON {
	out := make([]paramJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, paramOut(p))
	}
	return out
}

func (a *app) profileCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Manage profiles (XMPP accounts) and their parameters",
		Long: `Manage profiles (XMPP accounts) and their parameters.

A parameter KEY is category.name (see 'backend profile params NAME'). Its
effective value comes from the profile, else from the [params] table of the
daemon's config file, else from its declared default. Secrets (the account
password) are stored encrypted and never shown; they are never taken from the
command line: use --password-file, --password-env, or 'profile set NAME KEY -'
with the value on stdin.`,
	}
	cmd.AddCommand(a.profileCreateCommand(), a.profileListCommand(), a.profileShowCommand(),
		a.profileDeleteCommand(), a.profileParamsCommand(), a.profileGetCommand(), a.profileSetCommand(),
		a.profileConnectCommand(), a.profileDisconnectCommand())
	return cmd
}

func (a *app) profileCreateCommand() *cobra.Command {
	var jid, passwordFile, passwordEnv, host, caFile string
	var port int
	var noTLSVerify, autoconnect, directTLS bool
	cmd := &cobra.Command{
		Use:   "create NAME --jid JID (--password-file FILE | --password-env VAR) [--host HOST] [--port N] [--direct-tls] [--ca-file FILE] [--no-tls-verify] [--autoconnect]",
		Short: "Create a profile",
		Long: `Create a profile: NAME is 1 to 64 ASCII letters, digits, '_', '.' or '-',
starting with a letter or a digit; JID is the bare JID of the account. The
password is read from a file (one trailing newline is dropped) or from an
environment variable, never from the command line. Without --host and
--port the server is discovered from the JID's domain (DNS SRV records, then
the domain on 5222); 'backend profile show NAME' tells what was found.

With -o json the output is the new profile: {"name","jid","state","autoconnect"}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := a.readPassword(passwordFile, passwordEnv)
			if err != nil {
				return err
			}
			req := &backendv2.CreateProfileRequest{Name: args[0], Jid: jid, Password: password, Params: map[string]string{}}
			f := cmd.Flags()
			if f.Changed("host") {
				req.Params[profiles.KeyHost] = host
			}
			if f.Changed("port") {
				req.Params[profiles.KeyPort] = fmt.Sprint(port)
			}
			if f.Changed("direct-tls") {
				req.Params[profiles.KeyDirectTLS] = fmt.Sprint(directTLS)
			}
			if f.Changed("ca-file") {
				if req.Params[profiles.KeyCAFile], err = absPath(caFile); err != nil {
					return err
				}
			}
			if f.Changed("no-tls-verify") {
				req.Params[profiles.KeyTLSVerify] = fmt.Sprint(!noTLSVerify)
			}
			if f.Changed("autoconnect") {
				req.Params[profiles.KeyAutoconnect] = fmt.Sprint(autoconnect)
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.profiles().Create(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return c.check(err)
			}
			p := profileOut(res.Msg.GetProfile())
			if a.jsonOutput() {
				return a.printJSON(p)
			}
			_, err = fmt.Fprintf(a.stdout, "created profile %s (%s)\n", p.Name, p.JID)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&jid, "jid", "", "bare JID of the account (user@domain)")
	f.StringVar(&passwordFile, "password-file", "", "read the account password from this file")
	f.StringVar(&passwordEnv, "password-env", "", "read the account password from this environment variable")
	f.StringVar(&host, "host", "", "server host to connect to (default: discovered from the JID's domain: DNS SRV records, then the domain)")
	f.IntVar(&port, "port", 0, "server port, 1..65535, skips discovery (default: discovered; 5222 with --host; params.connection.port of the daemon config when set there)")
	f.BoolVar(&directTLS, "direct-tls", false, "with --host or --port: TLS from the first byte (XEP-0368) instead of STARTTLS")
	f.StringVar(&caFile, "ca-file", "", "PEM file of extra CA certificates to trust")
	f.BoolVar(&noTLSVerify, "no-tls-verify", false, "do not verify the server's TLS certificate (testing only)")
	f.BoolVar(&autoconnect, "autoconnect", false, "connect this profile when the daemon starts")
	cmd.MarkFlagRequired("jid")
	return cmd
}

// readPassword reads the password of `profile create` from exactly one of
// a file or an environment variable.
func (a *app) readPassword(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", usagef("give either --password-file or --password-env, not both")
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("--password-file: %v", err)
		}
		pw := trimNewline(string(raw))
		if pw == "" {
			return "", usagef("--password-file: %s is empty", file)
		}
		return pw, nil
	case env != "":
		pw, ok := a.lookup(env)
		if !ok || pw == "" {
			return "", usagef("--password-env: the environment variable %s is not set or empty", env)
		}
		return pw, nil
	}
	return "", usagef("a password is required: --password-file FILE or --password-env VAR (it is never taken from the command line)")
}

// trimNewline drops one trailing "\n" or "\r\n".
func trimNewline(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

func absPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("%s: %v", p, err)
	}
	return abs, nil
}

func (a *app) profileListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the profiles",
		Long:  `List the profiles. With -o json: {"profiles":[{"name","jid","state","autoconnect"}…]}.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.profiles().List(cmd.Context(), connect.NewRequest(&backendv2.ListProfilesRequest{}))
			if err != nil {
				return c.check(err)
			}
			out := struct {
				Profiles []profileJSON `json:"profiles"`
			}{Profiles: []profileJSON{}}
			for _, p := range res.Msg.GetProfiles() {
				out.Profiles = append(out.Profiles, profileOut(p))
			}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(w, "NAME\tJID\tSTATE\tAUTOCONNECT\n")
			for _, p := range out.Profiles {
				fmt.Fprintf(w, "%s\t%s\t%s\t%t\n", p.Name, p.JID, p.State, p.Autoconnect)
			}
			return w.Flush()
		},
	}
}

func (a *app) profileShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a profile and its parameters",
		Long: `Show a profile, what its live stream negotiated, and its parameters. With -o json:
{"name","jid","state","autoconnect","session","params":[…]} (params as in
'profile params'); "session" is null without a live stream, else
{"jid","endpoint","endpoint_origin","direct_tls","address","tls_version",
"tls_cipher_suite","sasl_mechanism","channel_binding","connected_at",
"failed_endpoints"}: endpoint_origin is "srv:_xmpps-client",
"srv:_xmpp-client", "domain" or "configured"; channel_binding is null
without one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.profiles().Show(cmd.Context(), connect.NewRequest(&backendv2.ShowProfileRequest{Name: args[0]}))
			if err != nil {
				return c.check(err)
			}
			p := profileOut(res.Msg.GetProfile())
			ps := paramsOut(res.Msg.GetParams())
			sess := sessionOut(res.Msg.GetSession())
			if a.jsonOutput() {
				return a.printJSON(struct {
					profileJSON
					Session *sessionJSON `json:"session"`
					Params  []paramJSON  `json:"params"`
				}{p, sess, ps})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(w, "name\t%s\njid\t%s\nstate\t%s\nautoconnect\t%t\n", p.Name, p.JID, p.State, p.Autoconnect)
			if sess != nil {
				kind := "STARTTLS"
				if sess.DirectTLS {
					kind = "direct TLS"
				}
				cb := "none"
				if sess.ChannelBinding != nil {
					cb = *sess.ChannelBinding
				}
				fmt.Fprintf(w, "bound jid\t%s\nendpoint\t%s (%s, %s) at %s\ntls\t%s %s\nsasl\t%s (channel binding: %s)\nconnected at\t%s\n",
					sess.JID, sess.Endpoint, kind, sess.EndpointOrigin, sess.Address, sess.TLSVersion, sess.TLSCipherSuite,
					sess.SASLMechanism, cb, sess.ConnectedAt)
				for _, f := range sess.FailedEndpoints {
					fmt.Fprintf(w, "failed first\t%s\n", f)
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			return a.printParamTable(ps)
		},
	}
}

func (a *app) profileDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a profile with its parameters and cached data",
		Long:  `Delete a profile with its parameters and cached data. With -o json: {"ok":true}.`,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			if _, err := c.profiles().Delete(cmd.Context(), connect.NewRequest(&backendv2.DeleteProfileRequest{Name: args[0]})); err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]bool{"ok": true})
			}
			_, err = fmt.Fprintf(a.stdout, "deleted profile %s\n", args[0])
			return err
		},
	}
}

func (a *app) profileParamsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "params NAME",
		Short: "Explain every parameter of a profile: value, source, type, bounds and help",
		Long: `Explain every parameter of a profile. With -o json:
{"params":[{"key","type","value","default","source","bounds","help","secret","needs_reconnect"}…]}
where value and default are typed (number, boolean, array or string), source is
"profile", "config" or "default", bounds is null when there are none, and a
secret's value is "********" when set and null when not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.profiles().Params(cmd.Context(), connect.NewRequest(&backendv2.ProfileParamsRequest{Name: args[0]}))
			if err != nil {
				return c.check(err)
			}
			ps := paramsOut(res.Msg.GetParams())
			if a.jsonOutput() {
				return a.printJSON(struct {
					Params []paramJSON `json:"params"`
				}{ps})
			}
			return a.printParamTable(ps)
		},
	}
}

// shownValue renders a typed value for the tables.
func shownValue(p paramJSON, v any) string {
	switch x := v.(type) {
	case nil:
		if p.Secret {
			return "(not set)"
		}
		return "-"
	case string:
		if x == "" {
			return `""`
		}
		return x
	case []string:
		return params.FormatList(x)
	}
	return fmt.Sprint(v)
}

func (a *app) printParamTable(ps []paramJSON) error {
	w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(w, "KEY\tVALUE\tSOURCE\tTYPE\tBOUNDS\tDEFAULT\tHELP\n")
	for _, p := range ps {
		bounds := "-"
		if p.Bounds != nil {
			bounds = *p.Bounds
		}
		help := p.Help
		if p.NeedsReconnect {
			help += " (applies on reconnect)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Key, shownValue(p, p.Value), p.Source, p.Type, bounds, shownValue(p, p.Default), help)
	}
	return w.Flush()
}

func (a *app) printParam(p paramJSON) error {
	if a.jsonOutput() {
		return a.printJSON(p)
	}
	bounds := "-"
	if p.Bounds != nil {
		bounds = *p.Bounds
	}
	w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(w, "key\t%s\nvalue\t%s\nsource\t%s\ntype\t%s\nbounds\t%s\ndefault\t%s\nsecret\t%t\nneeds_reconnect\t%t\nhelp\t%s\n",
		p.Key, shownValue(p, p.Value), p.Source, p.Type, bounds, shownValue(p, p.Default), p.Secret, p.NeedsReconnect, p.Help)
	return w.Flush()
}

func (a *app) profileGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME KEY",
		Short: "Show one parameter of a profile",
		Long:  `Show one parameter of a profile. With -o json: one parameter object as in 'profile params'.`,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.profiles().Get(cmd.Context(), connect.NewRequest(&backendv2.GetParamRequest{Name: args[0], Key: args[1]}))
			if err != nil {
				return c.check(err)
			}
			return a.printParam(paramOut(res.Msg.GetParam()))
		},
	}
}

func (a *app) profileSetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME KEY VALUE",
		Short: `Set a parameter of a profile (VALUE "-" reads it from stdin; required for secrets)`,
		Long: `Set a parameter of a profile. The value is checked against the parameter's
type and bounds; a refused value changes nothing. A VALUE of "-" reads the
value from stdin (one trailing newline dropped; on a terminal it is not
echoed). Secrets (connection.password) are only accepted that way:

  backend profile set alice connection.password - < password.txt

With -o json the output is the parameter as in 'profile get', after the change.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, key, value := args[0], args[1], args[2]
			c, err := a.dial()
			if err != nil {
				return err
			}
			cl := c.profiles()
			if value == "-" {
				if value, err = a.readStdinValue(key); err != nil {
					return err
				}
			} else {
				// Learn whether KEY is a secret before sending anything.
				res, err := cl.Get(cmd.Context(), connect.NewRequest(&backendv2.GetParamRequest{Name: name, Key: key}))
				if err != nil {
					return c.check(err)
				}
				if res.Msg.GetParam().GetSecret() {
					return usagef("%s is a secret and is not accepted on the command line (it would stay in the shell history and show in the process list): "+
						"run `backend profile set %s %s -` and type it, or pipe it on stdin", key, name, key)
				}
			}
			if key == profiles.KeyCAFile {
				if value, err = absPath(value); err != nil {
					return err
				}
			}
			res, err := cl.Set(cmd.Context(), connect.NewRequest(&backendv2.SetParamRequest{Name: name, Key: key, Value: value}))
			if err != nil {
				return c.check(err)
			}
			p := paramOut(res.Msg.GetParam())
			if a.jsonOutput() {
				return a.printJSON(p)
			}
			note := ""
			if p.NeedsReconnect {
				note = "; takes effect on the next connection"
			}
			_, err = fmt.Fprintf(a.stdout, "%s %s = %s (%s%s)\n", name, p.Key, shownValue(p, p.Value), p.Source, note)
			return err
		},
	}
}

// readStdinValue reads a value from stdin: on a terminal, one line without
// echo after a prompt on stderr; otherwise everything, minus one trailing
// newline.
func (a *app) readStdinValue(key string) (string, error) {
	if f, ok := a.stdin.(*os.File); ok {
		if v, ok, err := readNoEcho(f, a.stderr, key); ok || err != nil {
			return v, err
		}
	}
	raw, err := io.ReadAll(io.LimitReader(a.stdin, params.MaxValueLen+2))
	if err != nil {
		return "", fmt.Errorf("read the value of %s from stdin: %w", key, err)
	}
	return trimNewline(string(raw)), nil
}

// readNoEcho reads one line from the terminal f with echo off. ok is false
// when f is not a terminal.
func readNoEcho(f *os.File, prompt io.Writer, key string) (value string, ok bool, err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", false, nil // not a terminal
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", false, nil
	}
	defer func() {
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(prompt)
	}()
	fmt.Fprintf(prompt, "%s: ", key)
	var line bytes.Buffer
	buf := make([]byte, 1)
	for line.Len() <= params.MaxValueLen {
		n, rerr := f.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			line.WriteByte(buf[0])
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				break
			}
			return "", true, fmt.Errorf("read the value of %s: %w", key, rerr)
		}
	}
	return strings.TrimSuffix(line.String(), "\r"), true, nil
}
