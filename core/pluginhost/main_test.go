package pluginhost

import (
	"context"
	"fmt"
	"os"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/microblog"
)

// subcommand is the hidden subcommand of the re-exec path, as in the daemon.
const subcommand = "__plugin"

// registry is the test daemon's first-party plugins: the real microblog
// plugin, and "flaky", whose item "crash" ends its process.
func registry() map[string]*sdk.Plugin {
	return map[string]*sdk.Plugin{
		"microblog": microblog.New(),
		"flaky": {
			Name: "flaky", Version: "0.0.1",
			Analysers: []sdk.Analyser{{Name: "flaky", Type: "test", NodePrefix: "urn:flaky", Parser: "flaky"}},
			Parse: sdk.ParseEach(func(_ context.Context, _ sdk.ParseRequest, it sdk.Item) (any, string, error) {
				if it.ID == "crash" {
					os.Exit(3)
				}
				return map[string]int{"pid": os.Getpid()}, "", nil
			}),
		},
	}
}

// TestMain plays the daemon's hidden subcommand when the test binary is
// re-executed by SelfCommand: `pluginhost.test __plugin NAME`.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == subcommand {
		if err := ServeBuiltin(os.Args[2], registry()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
