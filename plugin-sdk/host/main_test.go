package host

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/internal/wire"
	"example.org/backend/plugin-sdk/plugins/microblog"
)

// helperEnv selects what the re-executed test binary does instead of running
// the tests: serve a plugin in some mode, or act as a host.
const helperEnv = "BACKEND_SDK_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	code := m.Run()
	CleanupAll()
	os.Exit(code)
}

// testPlugin echoes its items: JSON {"id","publisher","len","batch"}.
// Item ids "crash", "hang" and "panic" crash the process, wait for the
// context, and panic.
func testPlugin() *sdk.Plugin {
	return &sdk.Plugin{
		Name: "echo", Version: "1.2.3",
		Analysers: []sdk.Analyser{{Name: "echo", Type: "test", NodePrefix: "urn:test", Parser: "echo"}},
		Params:    []sdk.Param{{Category: "echo", Name: "n", Type: sdk.ParamInt, Default: "1"}},
		Parse: func(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
			sdk.Logger(ctx).Info("parsing batch", "items", len(req.Items))
			out := make([]sdk.ParseResult, len(req.Items))
			for i, it := range req.Items {
				switch it.ID {
				case "crash":
					os.Exit(7)
				case "hang":
					<-ctx.Done()
					return nil, ctx.Err()
				case "panic":
					panic("boom")
				case "stdout":
					fmt.Println("stray line on stdout")
					fmt.Fprintln(os.Stderr, "stray line on stderr")
				}
				raw, _ := json.Marshal(map[string]any{"id": it.ID, "publisher": it.Publisher, "len": len(it.Payload), "batch": len(req.Items)})
				out[i] = sdk.ParseResult{ID: it.ID, JSON: raw, SearchText: "text " + it.ID}
			}
			return out, nil
		},
	}
}

type nopPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (nopPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (nopPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("no client")
}

func helper(mode string) int {
	os.Unsetenv(helperEnv) // go-plugin passes the environment on: no recursion
	switch mode {
	case "echo":
		if err := sdk.Serve(testPlugin()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "microblog":
		if err := sdk.Serve(microblog.New()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "stdout":
		fmt.Println("debug: starting up")
		_ = sdk.Serve(testPlugin())
		return 0
	case "exit":
		fmt.Fprintln(os.Stderr, "fatal: configuration file missing")
		return 2
	case "v2":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  wire.Handshake(),
			VersionedPlugins: map[int]plugin.PluginSet{2: {wire.PluginSetName: nopPlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return 0
	case "host", "host-nopdeathsig":
		// A daemon stand-in: start the echo plugin, print its pid, wait to
		// be killed.
		cmd := exec.Command(os.Args[0])
		cmd.Env = []string{helperEnv + "=echo"}
		var pid int
		if mode == "host" {
			c, err := Start(context.Background(), Config{Name: "echo", Cmd: cmd})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			pid = c.Pid()
		} else {
			// Without go-plugin nor Pdeathsig: only the SDK's watchdog
			// can end the plugin.
			cmd.Env = append(cmd.Env, wire.CookieKey+"="+wire.CookieValue, "PLUGIN_PROTOCOL_VERSIONS=1")
			out, err := cmd.StdoutPipe()
			if err != nil || cmd.Start() != nil {
				return 1
			}
			if _, err := bufio.NewReader(out).ReadString('\n'); err != nil { // the handshake
				return 1
			}
			pid = cmd.Process.Pid
		}
		fmt.Println(strconv.Itoa(pid))
		time.Sleep(time.Minute)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 1
}

// helperCmd returns the command re-executing the test binary in a mode.
func helperCmd(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{helperEnv + "=" + mode}
	return cmd
}
