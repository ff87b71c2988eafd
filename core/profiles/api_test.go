package profiles

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/storage"
)

func TestAPI(t *testing.T) {
	fx := newFixture(t, storage.DriverSQLite, map[string]string{KeyPort: "5269"})
	mux := http.NewServeMux()
	mux.Handle(NewHandler(fx.svc))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := backendv1connect.NewProfileServiceClient(srv.Client(), srv.URL)
	ctx := context.Background()

	// Every answer is scanned for the password.
	var answers []proto.Message
	keep := func(m proto.Message) { answers = append(answers, m) }

	created, err := c.Create(ctx, connect.NewRequest(&backendv1.CreateProfileRequest{
		Name: "alice", Jid: "alice@example.org", Password: testPassword, Params: map[string]string{KeyTLSVerify: "false"}}))
	if err != nil {
		t.Fatal(err)
	}
	keep(created.Msg)
	if p := created.Msg.GetProfile(); p.GetName() != "alice" || p.GetState() != StateDisconnected {
		t.Errorf("created = %v", p)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code connect.Code
		msg  string
	}{
		{"duplicate", func() error {
			_, err := c.Create(ctx, connect.NewRequest(&backendv1.CreateProfileRequest{Name: "alice", Jid: "a@b.c"}))
			return err
		}, connect.CodeAlreadyExists, "already exists"},
		{"invalid jid", func() error {
			_, err := c.Create(ctx, connect.NewRequest(&backendv1.CreateProfileRequest{Name: "bob", Jid: "b@"}))
			return err
		}, connect.CodeInvalidArgument, "connection.jid"},
		{"invalid name", func() error {
			_, err := c.Create(ctx, connect.NewRequest(&backendv1.CreateProfileRequest{Name: "b/ob", Jid: "b@c.d"}))
			return err
		}, connect.CodeInvalidArgument, "profile name"},
		{"unknown profile", func() error {
			_, err := c.Show(ctx, connect.NewRequest(&backendv1.ShowProfileRequest{Name: "nobody"}))
			return err
		}, connect.CodeNotFound, "nobody"},
		{"unknown profile delete", func() error {
			_, err := c.Delete(ctx, connect.NewRequest(&backendv1.DeleteProfileRequest{Name: "nobody"}))
			return err
		}, connect.CodeNotFound, "nobody"},
		{"unknown key", func() error {
			_, err := c.Get(ctx, connect.NewRequest(&backendv1.GetParamRequest{Name: "alice", Key: "connection.prot"}))
			return err
		}, connect.CodeInvalidArgument, "did you mean connection.port"},
		{"bad value", func() error {
			_, err := c.Set(ctx, connect.NewRequest(&backendv1.SetParamRequest{Name: "alice", Key: KeyPort, Value: "x"}))
			return err
		}, connect.CodeInvalidArgument, "accepts an integer in 0..65535"},
	} {
		err := tc.call()
		if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.code, tc.msg)
		}
	}

	params, err := c.Params(ctx, connect.NewRequest(&backendv1.ProfileParamsRequest{Name: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	keep(params.Msg)
	got := map[string]*backendv1.ProfileParam{}
	for _, p := range params.Msg.GetParams() {
		got[p.GetKey()] = p
	}
	if p := got[KeyPort]; p.GetValue() != "5269" || p.GetSource() != "config" || p.GetDefaultValue() != "0" || p.GetBounds() != "0..65535" ||
		p.GetType() != "int" || !p.GetNeedsReconnect() || p.GetHelp() == "" || p.GetOwner() != Owner {
		t.Errorf("port = %v", p)
	}
	if p := got[KeyPassword]; p.GetValue() != "********" || !p.GetSecret() || p.GetSource() != "profile" {
		t.Errorf("password = %v", p)
	}
	if p := got[KeyTLSVerify]; p.GetValue() != "false" || p.GetSource() != "profile" {
		t.Errorf("tls_verify = %v", p)
	}
	set, err := c.Set(ctx, connect.NewRequest(&backendv1.SetParamRequest{Name: "alice", Key: KeyPassword, Value: "other-" + testPassword}))
	if err != nil {
		t.Fatal(err)
	}
	keep(set.Msg)
	show, err := c.Show(ctx, connect.NewRequest(&backendv1.ShowProfileRequest{Name: "alice"}))
	if err != nil {
		t.Fatal(err)
	}
	keep(show.Msg)
	get, err := c.Get(ctx, connect.NewRequest(&backendv1.GetParamRequest{Name: "alice", Key: KeyPassword}))
	if err != nil {
		t.Fatal(err)
	}
	keep(get.Msg)
	list, err := c.List(ctx, connect.NewRequest(&backendv1.ListProfilesRequest{}))
	if err != nil || len(list.Msg.GetProfiles()) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, m := range answers {
		if b, _ := protojson.Marshal(m); strings.Contains(string(b), testPassword) {
			t.Errorf("an answer holds the password: %s", b)
		}
	}
	if _, err := c.Delete(ctx, connect.NewRequest(&backendv1.DeleteProfileRequest{Name: "alice"})); err != nil {
		t.Fatal(err)
	}
	if list, _ := c.List(ctx, connect.NewRequest(&backendv1.ListProfilesRequest{})); len(list.Msg.GetProfiles()) != 0 {
		t.Errorf("after delete: %v", list.Msg)
	}
}
