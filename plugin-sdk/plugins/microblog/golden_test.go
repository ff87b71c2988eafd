package microblog_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	"example.org/backend/plugin-sdk/plugins/internal/golden"
	"example.org/backend/plugin-sdk/plugins/microblog"
	"example.org/backend/plugin-sdk/sdktest"
)

// serveEnv makes the test binary serve the plugin (see startPlugin).
const serveEnv = "MICROBLOG_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if err := sdk.Serve(microblog.New()); err != nil {
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// startPlugin runs the plugin as a real process (this test binary
// re-executed), the way the daemon runs a plugin.
func startPlugin(t testing.TB) *host.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{serveEnv + "=1"}
	c, err := host.Start(context.Background(), host.Config{Name: "microblog", Cmd: cmd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return c
}

// The hand-written golden cases (testdata/golden), in process and through
// a plugin process.
func TestGolden(t *testing.T) {
	t.Run("in-process", func(t *testing.T) { golden.Run(t, "testdata/golden", sdktest.Run(t, microblog.New())) })
	t.Run("process", func(t *testing.T) { golden.Run(t, "testdata/golden", startPlugin(t)) })
}
