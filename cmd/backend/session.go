package main

import (
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
)

func (c *conn) sessions() backendv2connect.SessionServiceClient {
	return backendv2connect.NewSessionServiceClient(c.http, c.baseURL, c.opts...)
}

func (a *app) profileConnectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "connect NAME",
		Short: "Connect a profile's XMPP session (waits for the first connection)",
		Long: `Connect a profile's XMPP session and wait for the first connection; an
authentication failure is reported with its SASL condition (e.g. not-authorized).
The session then reconnects by itself until 'profile disconnect'.
With -o json: {"profile","state","jid"}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.sessions().Connect(cmd.Context(), connect.NewRequest(&backendv2.ConnectRequest{Profile: args[0]}))
			if err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"profile": args[0], "state": res.Msg.GetState(), "jid": nullable(res.Msg.GetJid())})
			}
			_, err = fmt.Fprintf(a.stdout, "profile %s: %s as %s\n", args[0], res.Msg.GetState(), res.Msg.GetJid())
			return err
		},
	}
}

func (a *app) profileDisconnectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "disconnect NAME",
		Short: "Disconnect a profile's XMPP session",
		Long:  `Disconnect a profile's XMPP session. With -o json: {"profile","state"}.`,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			res, err := c.sessions().Disconnect(cmd.Context(), connect.NewRequest(&backendv2.DisconnectRequest{Profile: args[0]}))
			if err != nil {
				return c.check(err)
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"profile": args[0], "state": res.Msg.GetState()})
			}
			_, err = fmt.Fprintf(a.stdout, "profile %s: %s\n", args[0], res.Msg.GetState())
			return err
		},
	}
}
