package main

import "github.com/spf13/cobra"

// pubsubCommand is the `backend pubsub …` group (DESIGN §9).
func (a *app) pubsubCommand() *cobra.Command {
	return &cobra.Command{Use: "pubsub", Short: "XEP-0060 publish-subscribe"}
}
