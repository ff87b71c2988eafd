package main

import (
	"context"
	"os"
	"os/exec"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	"example.org/backend/plugin-sdk/sdktest"
)

func TestMain(m *testing.M) {
	if os.Getenv("HELLO_SERVE") == "1" { // re-executed below as the plugin
		main()
		return
	}
	os.Exit(m.Run())
}

var hi = sdk.Item{ID: "1", Payload: []byte(`<greeting xmlns="urn:example:hello" to="world">hello</greeting>`)}

// In process, through the SDK's real gRPC service.
func TestHello(t *testing.T) {
	c := sdktest.Run(t, newPlugin())
	ctx := context.Background()
	if err := c.Configure(ctx, "alice", map[string]string{"hello.shout": "true"}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Parse(ctx, sdk.ParseRequest{Profile: "alice", Items: []sdk.Item{hi}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if string(res[0].JSON) != `{"text":"HELLO","to":"world"}` {
		t.Errorf("got %s", res[0].JSON)
	}
}

// As a real subprocess, the way the daemon runs it.
func TestHelloSubprocess(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"HELLO_SERVE=1"}
	c, err := host.Start(context.Background(), host.Config{Name: "hello", Cmd: cmd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "bob", Items: []sdk.Item{hi}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if string(res[0].JSON) != `{"text":"hello","to":"world"}` || res[0].SearchText != "hello" {
		t.Errorf("got %s", res[0].JSON)
	}
}
