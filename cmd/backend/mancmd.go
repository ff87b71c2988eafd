package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCommand writes the man pages of every command, generated from the
// commands' own help (cobra/doc).
func (a *app) manCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages of every command into DIR (section 1)",
		Long: `Write one man page per command (backend.1, backend-serve.1,
backend-pubsub-items.1, …) into DIR, created when missing, generated from
the commands' own help. Install them where man looks, e.g.
/usr/local/share/man/man1, for 'man backend-serve'. The date in the pages
is the commit time of the build when known.
With -o json: {"dir","pages"}.`,
		Example: `  backend man ./man && man -l man/backend-cache-search.1
  sudo backend man /usr/local/share/man/man1 && sudo mandb -q`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			bi := build()
			header := &doc.GenManHeader{Section: "1", Source: "backend " + bi.Version, Manual: "backend manual"}
			if t, err := time.Parse(time.RFC3339, bi.Time); err == nil {
				header.Date = &t
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("write man pages: %w", err)
			}
			pages, _ := filepath.Glob(filepath.Join(dir, "backend*.1"))
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"dir": dir, "pages": len(pages)})
			}
			_, err := fmt.Fprintf(a.stdout, "%d man pages written to %s\n", len(pages), dir)
			return err
		},
	}
}
