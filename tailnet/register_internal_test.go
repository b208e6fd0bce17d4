package tailnet

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

type fixedAuth struct {
	id  Identity
	err error
}

func (a fixedAuth) Authenticate(context.Context, string) (Identity, error) { return a.id, a.err }

func newTestServer(t testing.TB, auth Authenticator) *Server {
	s, err := New(Options{ControlKey: key.NewMachine(), Authenticator: auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func registerBody(t testing.TB, nk key.NodePublic, authKey string) []byte {
	b, err := json.Marshal(tailcfg.RegisterRequest{
		Version:  tailcfg.CurrentCapabilityVersion,
		NodeKey:  nk,
		Auth:     &tailcfg.RegisterResponseAuth{AuthKey: authKey},
		Hostinfo: &tailcfg.Hostinfo{Hostname: "h"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegisterRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	agent := Identity{Kind: KindAgent, ID: "a", OwnerID: "u"}
	client := Identity{Kind: KindClient, ID: "k", OwnerID: "u"}
	tests := []struct {
		name        string
		auth        Authenticator
		browserOnly bool
		wantErr     string
	}{
		{"accepted", fixedAuth{id: agent}, false, ""},
		{"authenticator refuses", fixedAuth{err: context.DeadlineExceeded}, false, "The auth key was refused: check that it is valid and not expired."},
		{"authenticator says browser only", fixedAuth{err: ErrBrowserOnly}, false, "Non-browser connections are disabled for your deployment."},
		{"browser only refuses clients", fixedAuth{id: client}, true, "Non-browser connections are disabled for your deployment."},
		{"browser only admits agents", fixedAuth{id: agent}, true, ""},
		{"invalid kind", fixedAuth{id: Identity{Kind: "root", ID: "x"}}, false, "The auth key was refused: check that it is valid and not expired."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.auth)
			s.SetBrowserOnly(tc.browserOnly)
			nk := key.NewNode().Public()
			res, code := s.register(ctx, key.NewMachine().Public(), registerBody(t, nk, "k"))
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if res.Error != tc.wantErr {
				t.Fatalf("Error %q, want %q", res.Error, tc.wantErr)
			}
			if res.MachineAuthorized != (tc.wantErr == "") {
				t.Errorf("MachineAuthorized %v", res.MachineAuthorized)
			}
			if _, err := s.store.GetNode(ctx, nk); (err == nil) != (tc.wantErr == "") {
				t.Errorf("stored after register: %v", err)
			}
		})
	}
}

func FuzzRegister(f *testing.F) {
	nk := key.NewNode().Public()
	f.Add(registerBody(f, nk, "k"))
	f.Add([]byte(`{"Version":142,"NodeKey":"nodekey:0000000000000000000000000000000000000000000000000000000000000000"}`))
	f.Add([]byte(`{"Version":1,"NodeKey":"` + nk.String() + `","Expiry":"2001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"Version":1,"NodeKey":"` + nk.String() + `","OldNodeKey":"` + nk.String() + `","Auth":{"AuthKey":""}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"Hostinfo":{"Hostname":"\u0000..--"},"NodeKey":"` + nk.String() + `","Auth":{"AuthKey":"x"}}`))
	s := newTestServer(f, fixedAuth{id: Identity{Kind: KindAgent, ID: "a", OwnerID: "u", Name: ""}})
	mk := key.NewMachine().Public()
	f.Fuzz(func(t *testing.T, body []byte) {
		res, code := s.register(context.Background(), mk, body)
		if code == http.StatusOK && res == nil {
			t.Fatal("200 without a response")
		}
		if code != http.StatusOK && res != nil {
			t.Fatal("response with an error status")
		}
	})
}
