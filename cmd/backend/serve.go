package main

import (
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"example.org/backend/core/config"
	"example.org/backend/core/daemon"
	"example.org/backend/core/sdnotify"
)

func (a *app) serveCommand() *cobra.Command {
	var o config.Overrides
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon (until SIGINT or SIGTERM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Socket = a.socket
			cfg, err := config.Load(o, a.lookup)
			if err != nil {
				return err
			}
			log := newLogger(cfg, a.stderr)
			notify, err := sdnotify.FromEnv()
			if err != nil {
				log.Warn("systemd notification socket unusable; running without readiness notification", "err", err)
			}
			defer notify.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, daemon.Options{
				Config:     cfg,
				Build:      build(),
				Log:        log,
				Builtins:   builtinPlugins(),
				FirstParty: firstPartyPlugins(),
				Notify:     notify,
			})
		},
	}
	cmd.Flags().StringVar(&o.File, "config", "", "configuration file (default $XDG_CONFIG_HOME/backend/config.toml)")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "data directory (default $XDG_DATA_HOME/backend)")
	return cmd
}

func newLogger(cfg config.Config, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
