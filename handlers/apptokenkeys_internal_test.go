package handlers

import (
	"context"
	"testing"
	"time"

	"github.com/gatewaydev/coder/apps"
	"github.com/gatewaydev/coder/internal/testutil"
	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/store/storetest"
)

// TestAppTokenKeysRotate: the key ring lives in the database, so a token
// sealed by one replica opens on another; a new key takes over after the
// rotation period while tokens of the old one still open until it
// expires; an expired or unknown key opens nothing.
func TestAppTokenKeysRotate(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rotation = 300 * time.Millisecond
	one := newAppTokenKeys(db, rotation, time.Hour)
	two := newAppTokenKeys(db, rotation, time.Hour)
	now := time.Now()
	tok := apps.Token{UserID: "u", Host: "a--b--c--d", Method: apps.AccessSubdomain, ExpiresAt: now.Add(time.Hour).Unix()}
	s1, err := apps.SealToken(ctx, one, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apps.OpenToken(ctx, two, s1, time.Now(), apps.AccessSubdomain, tok.Host); err != nil {
		t.Fatalf("another replica cannot open the token: %v", err)
	}
	k1, _ := one.EncryptionKey(ctx)
	if k2, _ := two.EncryptionKey(ctx); k2.ID != k1.ID {
		t.Fatalf("the replicas encrypt with %s and %s", k1.ID, k2.ID)
	}
	testutil.Eventually(t, 30*time.Second, "a new key after the rotation period", func() bool {
		k, err := one.EncryptionKey(ctx)
		return err == nil && k.ID != k1.ID
	})
	if _, err := apps.OpenToken(ctx, two, s1, time.Now(), apps.AccessSubdomain, tok.Host); err != nil {
		t.Fatalf("a token of the previous key no longer opens: %v", err)
	}
	// An expired key: refused, and the janitor's query deletes it.
	if _, err := db.Pool.Exec(ctx, `UPDATE app_token_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, k1.ID); err != nil {
		t.Fatal(err)
	}
	fresh := newAppTokenKeys(db, rotation, time.Hour)
	if _, err := apps.OpenToken(ctx, fresh, s1, time.Now(), apps.AccessSubdomain, tok.Host); err == nil {
		t.Fatal("a token of an expired key opened")
	}
	if err := db.DeleteExpiredAppTokenKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AppTokenKeyByID(ctx, k1.ID); err != store.ErrNotFound {
		t.Fatalf("expired key still stored: %v", err)
	}
}
