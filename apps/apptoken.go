package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// App tokens let a visitor into a subdomain app (and, later, any app on a
// workspace proxy) without the dashboard's cookie ever reaching the app's
// host. The primary issues one after checking the dashboard session
// ([TokenQueryParam] on the redirect back); the app's host keeps it in a
// cookie of its own ([TokenCookie]).
//
// A token is a JWE (go-jose): its claims, JSON, are encrypted and
// authenticated with AES-256-GCM under a key of the deployment's key ring
// (key management "dir", the key named by "kid"), so that only servers
// holding the ring can read or make one, and any change to it is refused.

// TokenCookie is the cookie that holds an app token on an app's host. It
// never reaches the app.
const TokenCookie = "coder_app_token"

// TokenQueryParam carries a freshly issued app token from the primary to
// the app's host, which moves it into TokenCookie and strips it from the
// URL with a redirect; it never reaches the app.
const TokenQueryParam = "coder_app_token"

// AccessSubdomain is the access method of a token for a subdomain app or a
// port URL.
const AccessSubdomain = "subdomain"

// Token is an app token's claims.
type Token struct {
	// UserID is the visitor the token was issued to.
	UserID string `json:"sub"`
	// Generation is the user's app-session generation when the token was
	// issued: logging out bumps it, which ends every token issued before.
	Generation int64 `json:"gen"`
	// Host is the app's label (AppHost.String): user, workspace, agent and
	// app slug or port. A token opens that host only.
	Host        string `json:"host"`
	WorkspaceID string `json:"wid"`
	AgentID     string `json:"aid"`
	// Method is the access method, AccessSubdomain.
	Method    string `json:"method"`
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"`
}

// TokenKey is one key of the token key ring: 32 random bytes.
type TokenKey struct {
	ID     string
	Secret []byte
}

// TokenKeys is the deployment's token key ring, shared by its replicas;
// handlers fills it from the store. Keys rotate: new tokens use the
// newest, older ones are still accepted until they expire.
type TokenKeys interface {
	// EncryptionKey returns the key that new tokens use.
	EncryptionKey(ctx context.Context) (TokenKey, error)
	// DecryptionKey returns the key id, or an error when there is no such
	// key or it has expired.
	DecryptionKey(ctx context.Context, id string) (TokenKey, error)
}

// ErrBadToken is every reason a token does not open: malformed, forged
// (another key, a changed byte), expired, or for another host or method.
var ErrBadToken = errors.New("app token is not valid")

// SealToken encrypts t under keys' current key.
func SealToken(ctx context.Context, keys TokenKeys, t Token) (string, error) {
	k, err := keys.EncryptionKey(ctx)
	if err != nil {
		return "", fmt.Errorf("app token key: %w", err)
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: k.Secret, KeyID: k.ID},
		(&jose.EncrypterOptions{}).WithContentType("JWT"))
	if err != nil {
		return "", fmt.Errorf("app token encrypter: %w", err)
	}
	payload, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	obj, err := enc.Encrypt(payload)
	if err != nil {
		return "", fmt.Errorf("encrypt app token: %w", err)
	}
	return obj.CompactSerialize()
}

// maxTokenLen bounds what OpenToken parses: a real token is a few hundred
// bytes.
const maxTokenLen = 4096

// OpenToken decrypts and checks s: it must be made with a key of keys,
// unexpired at now, and its Method must be method and its Host host. Every
// failure wraps ErrBadToken.
func OpenToken(ctx context.Context, keys TokenKeys, s string, now time.Time, method, host string) (Token, error) {
	if len(s) > maxTokenLen {
		return Token{}, fmt.Errorf("%w: %d bytes", ErrBadToken, len(s))
	}
	obj, err := jose.ParseEncryptedCompact(s, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	k, err := keys.DecryptionKey(ctx, obj.Header.KeyID)
	if err != nil {
		return Token{}, fmt.Errorf("%w: key %q: %v", ErrBadToken, obj.Header.KeyID, err)
	}
	plain, err := obj.Decrypt(k.Secret)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	var t Token
	if err := json.Unmarshal(plain, &t); err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	switch {
	case now.Unix() >= t.ExpiresAt:
		return Token{}, fmt.Errorf("%w: expired at %d", ErrBadToken, t.ExpiresAt)
	case t.Method != method:
		return Token{}, fmt.Errorf("%w: method %q", ErrBadToken, t.Method)
	case t.Host != host:
		return Token{}, fmt.Errorf("%w: for host %q", ErrBadToken, t.Host)
	case t.UserID == "":
		return Token{}, fmt.Errorf("%w: no user", ErrBadToken)
	}
	return t, nil
}
