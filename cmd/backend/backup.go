package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"example.org/backend/core/config"
	"example.org/backend/core/daemon"
	"example.org/backend/core/secrets"
	"example.org/backend/core/storage"
	"example.org/backend/ent/param"
)

// backupJSON describes a database copy in `backup` and `restore` -o json.
type backupJSON struct {
	Path     string `json:"path"`
	Bytes    int64  `json:"bytes"`
	Version  uint   `json:"version"`
	Profiles int64  `json:"profiles"`
	Items    int64  `json:"items"`
}

func backupOut(in storage.BackupInfo) backupJSON {
	return backupJSON{Path: in.Path, Bytes: in.Bytes, Version: in.Version, Profiles: in.Profiles, Items: in.Items}
}

// humanBytes formats n bytes for people.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (a *app) backupCommand() *cobra.Command {
	var o config.Overrides
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the database to FILE (SQLite; the daemon may keep running)",
		Long: `Write a consistent copy of the daemon's SQLite database to FILE (mode 0600)
with VACUUM INTO: it includes the writes still in the write-ahead log, so the
daemon may keep running. FILE must not exist; the copy is checked before it
gets its name. The database is found like the daemon finds it (--config,
--data-dir, BACKEND_* variables); run it as the daemon's user.

Keep <data_dir>/secret.key with the copy: the stored passwords are
encrypted with it. With PostgreSQL, the command says which pg_dump to run.
With -o json: {"path","source","bytes","version","profiles","items"}.`,
		Example: `  backend backup ~/backend-$(date +%F).db
  sudo -u backend backend backup --config /etc/backend/config.toml /var/lib/backend/manual.db`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Socket = a.socket
			cfg, err := config.Load(o, a.lookup)
			if err != nil {
				return err
			}
			info, err := storage.Backup(cmd.Context(), daemon.StorageConfig(cfg), args[0])
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(struct {
					backupJSON
					Source string `json:"source"`
				}{backupOut(info), info.Source})
			}
			_, err = fmt.Fprintf(a.stdout, "backed up %s (schema version %d, %d profiles, %d cached items) to %s (%s, mode 0600)\n"+
				"keep %s with it: the stored passwords are encrypted with that key\n",
				info.Source, info.Version, info.Profiles, info.Items, info.Path, humanBytes(info.Bytes),
				filepath.Join(cfg.DataDir, secrets.KeyFileName))
			return err
		},
	}
	cmd.Flags().StringVar(&o.File, "config", "", "configuration file (default $XDG_CONFIG_HOME/backend/config.toml)")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "data directory (default $XDG_DATA_HOME/backend)")
	return cmd
}

func (a *app) restoreCommand() *cobra.Command {
	var o config.Overrides
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the database with a backup (SQLite; the daemon stopped)",
		Long: `Replace the daemon's SQLite database with the backup FILE, the daemon stopped
(it is refused while a daemon uses the database). FILE is checked (SQLite
integrity, a schema this binary knows), copied beside the database, migrated
to this binary's schema, and only then put in place; the database it
replaces is kept in <data_dir>/backups/. FILE itself is not modified.

Secrets in the backup open only with the secret.key saved with it: the
command says when they were sealed with another key than the data
directory's. With PostgreSQL, the command says which pg_restore to run.
With -o json: {"database","restored":{"path","bytes","version","profiles","items"},
"migrated_to","previous","secrets","secrets_other_key"}.`,
		Example: `  systemctl stop backend
  sudo -u backend backend restore --config /etc/backend/config.toml /var/lib/backend/manual.db
  systemctl start backend`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Socket = a.socket
			cfg, err := config.Load(o, a.lookup)
			if err != nil {
				return err
			}
			scfg := daemon.StorageConfig(cfg)
			res, err := storage.Restore(cmd.Context(), scfg, args[0], nil)
			if err != nil {
				return err
			}
			total, other, err := secretsUnderOtherKey(cmd.Context(), scfg, cfg.DataDir)
			if err != nil {
				return fmt.Errorf("restored, but the secrets could not be checked: %w", err)
			}
			var prev *string
			if res.Previous != "" {
				prev = &res.Previous
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"database": res.Database, "restored": backupOut(res.Restored), "migrated_to": res.MigratedTo,
					"previous": prev, "secrets": total, "secrets_other_key": other})
			}
			fmt.Fprintf(a.stdout, "restored %s (schema version %d, %d profiles, %d cached items) into %s",
				res.Restored.Path, res.Restored.Version, res.Restored.Profiles, res.Restored.Items, res.Database)
			if res.MigratedTo != res.Restored.Version {
				fmt.Fprintf(a.stdout, ", migrated to schema version %d", res.MigratedTo)
			}
			fmt.Fprintln(a.stdout)
			if prev != nil {
				fmt.Fprintf(a.stdout, "the replaced database is kept in %s\n", *prev)
			}
			if other > 0 {
				fmt.Fprintf(a.stdout, "warning: %d of %d stored secrets were encrypted with another key than %s: put back the secret.key saved with the backup, "+
					"or set them again (backend profile set NAME connection.password -)\n", other, total, filepath.Join(cfg.DataDir, secrets.KeyFileName))
			}
			_, err = fmt.Fprintln(a.stdout, "start the daemon: backend serve (or systemctl start backend)")
			return err
		},
	}
	cmd.Flags().StringVar(&o.File, "config", "", "configuration file (default $XDG_CONFIG_HOME/backend/config.toml)")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "data directory (default $XDG_DATA_HOME/backend)")
	return cmd
}

// secretsUnderOtherKey counts the stored secrets, and those sealed with
// another key than the one of dataDir (all of them when it has none).
func secretsUnderOtherKey(ctx context.Context, cfg storage.Config, dataDir string) (total, other int, err error) {
	st, err := storage.Open(ctx, cfg, nil)
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	rows, err := st.Client.Param.Query().Where(param.SecretNotNil()).All(ctx)
	if err != nil {
		return 0, 0, err
	}
	key := ""
	if secrets.KeyExists(dataDir) {
		box, err := secrets.OpenBox(dataDir)
		if err != nil {
			return 0, 0, err
		}
		key = box.KeyID()
	}
	for _, r := range rows {
		if r.Secret == nil {
			continue
		}
		total++
		if id, ok := secrets.SealedKeyID(*r.Secret); !ok || id != key {
			other++
		}
	}
	return total, other, nil
}
