package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core"
	"example.org/backend/core/config"
	"example.org/backend/core/profiles"
)

func TestProfileParamsPrecedenceThroughAPI(t *testing.T) {
	_, cfg := start(t, func(c *config.Config) {
		c.Params = map[string]string{"connection.port": "5269", "connection.resource": "cfg"}
	})
	hc := unixClient(cfg.Socket)
	pc := backendv1connect.NewProfileServiceClient(hc, "http://backend")
	dc := backendv1connect.NewDaemonServiceClient(hc, "http://backend")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stream, err := dc.Events(ctx, connect.NewRequest(&backendv1.EventsRequest{Profile: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || stream.Msg().GetType() != "stream.started" {
		t.Fatalf("no stream.started: %v", stream.Err())
	}

	if _, err := pc.Create(ctx, connect.NewRequest(&backendv1.CreateProfileRequest{Name: "alice", Jid: "alice@example.org", Password: "pw"})); err != nil {
		t.Fatal(err)
	}
	get := func(key string) *backendv1.ProfileParam {
		t.Helper()
		res, err := pc.Get(ctx, connect.NewRequest(&backendv1.GetParamRequest{Name: "alice", Key: key}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetParam()
	}
	for key, want := range map[string][2]string{
		"connection.port":       {"5269", "config"},
		"connection.resource":   {"cfg", "config"},
		"connection.tls_verify": {"true", "default"},
	} {
		if p := get(key); p.GetValue() != want[0] || p.GetSource() != want[1] {
			t.Errorf("%s = %q from %s, want %q from %s", key, p.GetValue(), p.GetSource(), want[0], want[1])
		}
	}
	if _, err := pc.Set(ctx, connect.NewRequest(&backendv1.SetParamRequest{Name: "alice", Key: "connection.port", Value: "5223"})); err != nil {
		t.Fatal(err)
	}
	if p := get("connection.port"); p.GetValue() != "5223" || p.GetSource() != "profile" {
		t.Errorf("port after set = %v", p)
	}

	// The API event stream carries the change (profile.created comes first).
	for stream.Receive() {
		ev := stream.Msg()
		if ev.GetType() != "param.changed" {
			continue
		}
		var data map[string]any
		json.Unmarshal(ev.GetDataJson(), &data)
		if ev.GetProfile() != "alice" || data["key"] != "connection.port" || data["value"] != float64(5223) || data["source"] != "profile" {
			t.Errorf("param.changed = %v %v", ev, data)
		}
		break
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestBadParamsConfigRefusesStart(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		msg    string
	}{
		{map[string]string{"connection.prot": "5222"}, `unknown parameter "connection.prot" (did you mean connection.port?)`},
		{map[string]string{"connection.port": "70000"}, "connection.port: 70000 is out of range"},
		{map[string]string{"connection.password": "x"}, "a secret cannot be set in the config file"},
	} {
		dir := shortDir(t)
		cfg := config.Default(func(string) (string, bool) { return "", false })
		cfg.DataDir = dir + "/data"
		cfg.Socket = dir + "/api.sock"
		cfg.Params = tc.params
		err := Run(context.Background(), Options{Config: cfg, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Builtins: []core.Plugin{plug{}}})
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("params %v: err = %v, want it to mention %q", tc.params, err, tc.msg)
		}
		if strings.Contains(errString(err), `"x"`) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestStatusListsProfiles(t *testing.T) {
	d, cfg := start(t, nil)
	if _, err := d.Profiles.Create(context.Background(), profiles.CreateRequest{Name: "alice", JID: "alice@example.org", Password: "pw-status"}); err != nil {
		t.Fatal(err)
	}
	c := backendv1connect.NewDaemonServiceClient(unixClient(cfg.Socket), "http://backend")
	res, err := c.Status(context.Background(), connect.NewRequest(&backendv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Msg.Profiles) != 1 || res.Msg.Profiles[0].Name != "alice" || res.Msg.Profiles[0].Jid != "alice@example.org" || res.Msg.Profiles[0].State != "disconnected" {
		t.Errorf("status profiles = %v", res.Msg.Profiles)
	}
}
