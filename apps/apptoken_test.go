package apps_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/apps"
)

type memKeys map[string][]byte

func (m memKeys) EncryptionKey(context.Context) (apps.TokenKey, error) {
	for id, s := range m {
		return apps.TokenKey{ID: id, Secret: s}, nil
	}
	return apps.TokenKey{}, errors.New("no key")
}

func (m memKeys) DecryptionKey(_ context.Context, id string) (apps.TokenKey, error) {
	if s, ok := m[id]; ok {
		return apps.TokenKey{ID: id, Secret: s}, nil
	}
	return apps.TokenKey{}, errors.New("no such key")
}

func newKey(id string) memKeys {
	s := make([]byte, 32)
	rand.Read(s)
	return memKeys{id: s}
}

// TestAppToken: a token opens for its host and method until it expires,
// and a token made under another key, changed in one byte, for another
// host or method, or past its expiry, is refused; its claims are not
// readable without the key.
func TestAppToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := newKey("k1")
	now := time.Now()
	host := "code--main--dev--alice"
	tok := apps.Token{UserID: "user-0123456789abcdef", Host: host, AgentID: "a1", WorkspaceID: "w1", Method: apps.AccessSubdomain,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix()}
	s, err := apps.SealToken(ctx, keys, tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "user-0123456789abcdef") || strings.Contains(s, "main--dev--alice") || strings.Count(s, ".") != 4 {
		t.Fatalf("token %q is not an opaque compact JWE", s)
	}
	got, err := apps.OpenToken(ctx, keys, s, now, apps.AccessSubdomain, host)
	if err != nil || got != tok {
		t.Fatalf("OpenToken = %+v, %v; want %+v", got, err, tok)
	}
	other := newKey("k1") // same id, another secret: a forgery
	forged, _ := apps.SealToken(ctx, other, tok)
	flipped := []byte(s)
	i := strings.LastIndexByte(s, '.') - 3
	flipped[i] ^= 1
	for name, c := range map[string]struct {
		s         string
		now       time.Time
		keys      memKeys
		method, h string
	}{
		"forged":       {forged, now, keys, apps.AccessSubdomain, host},
		"changed":      {string(flipped), now, keys, apps.AccessSubdomain, host},
		"expired":      {s, now.Add(time.Minute), keys, apps.AccessSubdomain, host},
		"other host":   {s, now, keys, apps.AccessSubdomain, "other--main--dev--alice"},
		"other method": {s, now, keys, "path", host},
		"unknown key":  {s, now, newKey("k2"), apps.AccessSubdomain, host},
		"garbage":      {"a.b.c.d.e", now, keys, apps.AccessSubdomain, host},
		"empty":        {"", now, keys, apps.AccessSubdomain, host},
		"huge":         {strings.Repeat("a", 1<<20), now, keys, apps.AccessSubdomain, host},
	} {
		if _, err := apps.OpenToken(ctx, c.keys, c.s, c.now, c.method, c.h); !errors.Is(err, apps.ErrBadToken) {
			t.Errorf("%s: OpenToken err = %v, want ErrBadToken", name, err)
		}
	}
}
