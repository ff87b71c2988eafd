package main

import "github.com/spf13/cobra"

func (a *app) migrateCommand() *cobra.Command { return &cobra.Command{Use: "migrate"} }
