package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"example.org/backend/core/config"
	"example.org/backend/core/daemon"
	"example.org/backend/core/storage"
)

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Database migrations"}
	var o config.Overrides
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the database's migration state (works without a running daemon; opens the database read-only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(o, a.lookup)
			if err != nil {
				return err
			}
			st, err := storage.Status(cmd.Context(), daemon.StorageConfig(cfg))
			if err != nil {
				return err
			}
			out := struct {
				Driver  string   `json:"driver"`
				Current uint     `json:"current"`
				Head    uint     `json:"head"`
				Dirty   bool     `json:"dirty"`
				Applied []string `json:"applied"`
				Pending []string `json:"pending"`
			}{st.Driver, st.Current, st.Head, st.Dirty, nonNil(st.Applied), nonNil(st.Pending)}
			if a.jsonOutput() {
				return a.printJSON(out)
			}
			fmt.Fprintf(a.stdout, "driver   %s\ncurrent  %d\nhead     %d\ndirty    %v\n", out.Driver, out.Current, out.Head, out.Dirty)
			for _, m := range out.Applied {
				fmt.Fprintf(a.stdout, "applied  %s\n", m)
			}
			for _, m := range out.Pending {
				fmt.Fprintf(a.stdout, "pending  %s\n", m)
			}
			return nil
		},
	}
	status.Flags().StringVar(&o.File, "config", "", "configuration file")
	status.Flags().StringVar(&o.DataDir, "data-dir", "", "data directory")
	cmd.AddCommand(status)
	return cmd
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
