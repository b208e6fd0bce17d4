package handlers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/time/rate"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
)

// argon2id parameters (RFC 9106's second recommended option, with less
// memory so that a login costs ~20 ms on two cores).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// hashPassword returns an encoded argon2id hash of password with a random
// salt.
func hashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// checkPassword compares password with an encoded hash in constant time.
func checkPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is compared against when a login names no user, so that the
// response time does not tell whether the user exists.
var dummyHash, _ = hashPassword("not a password")

const minPasswordLen = 8

func validatePassword(pw string) error {
	if len(pw) < minPasswordLen {
		return fmt.Errorf("must be at least %d characters", minPasswordLen)
	}
	if len(pw) > 256 {
		return errors.New("must be at most 256 characters")
	}
	return nil
}

// randomString returns n random letters and digits (no "-", which
// separates the parts of an API key).
func randomString(n int) string {
	return randomAlnum(n)
}

func randomAlnum(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	out := make([]byte, n)
	buf := make([]byte, n*2)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		for _, c := range buf {
			// 248 = 4*62: reject to keep the distribution uniform.
			if c < 248 && i < n {
				out[i] = alphabet[c%62]
				i++
			}
		}
	}
	return string(out)
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// API key lifetimes by kind.
var apiKeyLifetime = map[string]time.Duration{
	"cli":   30 * 24 * time.Hour,
	"token": 365 * 24 * time.Hour,
}

// newAPIKey creates an API key for user and returns "<id>-<secret>".
func (a *API) newAPIKey(ctx context.Context, userID, kind, name string) (string, error) {
	id := randomString(10)
	secret := randomString(22)
	err := a.db.CreateAPIKey(ctx, store.APIKey{
		ID: id, UserID: userID, HashedSecret: hashSecret(secret), Kind: kind, Name: name,
		ExpiresAt: time.Now().Add(apiKeyLifetime[kind]),
	})
	if err != nil {
		return "", fmt.Errorf("create api key: %w", err)
	}
	return id + "-" + secret, nil
}

// errBadToken is what every kind of bad API key gets, so the answer tells
// nothing about which part was wrong.
var errBadToken = &HTTPError{Code: http.StatusUnauthorized, Msg: "Your session token is invalid or expired. Log in again with `coder login`."}

// userFromAPIKey resolves "<id>-<secret>" to its user, comparing the
// secret's hash in constant time.
func (a *API) userFromAPIKey(ctx context.Context, token string) (store.User, store.APIKey, error) {
	id, secret, ok := strings.Cut(token, "-")
	if !ok || len(id) != 10 || len(secret) != 22 {
		return store.User{}, store.APIKey{}, errBadToken
	}
	key, err := a.db.APIKeyByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, store.APIKey{}, errBadToken
	}
	if err != nil {
		return store.User{}, store.APIKey{}, err
	}
	if subtle.ConstantTimeCompare(hashSecret(secret), key.HashedSecret) != 1 || time.Now().After(key.ExpiresAt) {
		return store.User{}, store.APIKey{}, errBadToken
	}
	u, err := a.db.UserByID(ctx, key.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, store.APIKey{}, errBadToken
	}
	if err != nil {
		return store.User{}, store.APIKey{}, err
	}
	if err := a.db.TouchAPIKey(ctx, key.ID); err != nil {
		a.logger.Warn("record api key use", "err", err)
	}
	return u, key, nil
}

type ctxKey int

const (
	userKey ctxKey = iota
	apiKeyIDKey
)

// userFrom returns the authenticated user of a request that passed
// withUser. It panics otherwise: that is a routing bug.
func userFrom(r *http.Request) store.User {
	return r.Context().Value(userKey).(store.User)
}

// sessionUserKey is the scs key holding the logged-in user's id.
const sessionUserKey = "user_id"

// authenticate finds the user of r: the Coder-Session-Token header (CLI and
// API), or the browser session cookie. It returns ok=false when neither is
// present; a present but bad token is an error.
func (a *API) authenticate(r *http.Request) (store.User, string, bool, error) {
	if tok := r.Header.Get(sdk.SessionTokenHeader); tok != "" {
		u, k, err := a.userFromAPIKey(r.Context(), tok)
		return u, k.ID, err == nil, err
	}
	id := a.sessions.GetString(r.Context(), sessionUserKey)
	if id == "" {
		return store.User{}, "", false, nil
	}
	u, err := a.db.UserByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted user: end the session.
		_ = a.sessions.Destroy(r.Context())
		return store.User{}, "", false, nil
	}
	return u, "", err == nil, err
}

// withUser requires an authenticated user. Pages redirect to the login page;
// API calls get 401.
func (a *API) withUser(h handlerFunc) http.HandlerFunc {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		u, keyID, ok, err := a.authenticate(r)
		if err != nil {
			return err
		}
		if !ok {
			if isAPI(r) {
				return &HTTPError{Code: http.StatusUnauthorized, Msg: "You are not logged in. Run `coder login <url>` or send a Coder-Session-Token header."}
			}
			http.Redirect(w, r, "/login?redirect="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return nil
		}
		ctx := context.WithValue(r.Context(), userKey, u)
		ctx = context.WithValue(ctx, apiKeyIDKey, keyID)
		return h(w, r.WithContext(ctx))
	})
}

// withOwner requires the owner role.
func (a *API) withOwner(h handlerFunc) http.HandlerFunc {
	return a.withUser(func(w http.ResponseWriter, r *http.Request) error {
		if userFrom(r).Role != store.RoleOwner {
			return &HTTPError{Code: http.StatusForbidden, Msg: "Only the deployment's owner can do this."}
		}
		return h(w, r)
	})
}

// loginLimiter rate-limits login attempts with token buckets per client
// address and per (address, account), so that a flood from one address
// neither locks the account out for everyone else nor gets to guess on.
// A bucket that has refilled is as good as none, so it is forgotten; memory
// is bounded by maxBuckets, and when that many buckets are all still
// draining, attempts from new keys are refused until some refill (limits
// are never reset to make room).
type loginLimiter struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	// lastSweep is when full buckets were last dropped.
	lastSweep time.Time
	// now and maxBuckets are set by tests; zero means time.Now and
	// defaultMaxLoginBuckets.
	now        func() time.Time
	maxBuckets int
}

// Login limits: per (address, account) a burst of 10 then one every 6 s;
// per address (all accounts) a burst of 30 then one every 2 s.
const (
	loginAccountBurst      = 10
	loginAccountEvery      = 6 * time.Second
	loginAddressBurst      = 30
	loginAddressEvery      = 2 * time.Second
	defaultMaxLoginBuckets = 100_000
)

// allow takes one attempt from the buckets of addr and of (addr, account),
// or from neither when either is empty. account must be normalised by the
// caller (the user's id when the login names a user).
func (l *loginLimiter) allow(addr, account string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	if l.buckets == nil {
		l.buckets = map[string]*rate.Limiter{}
	}
	addrLim, ok := l.bucketLocked("a\x00"+addr, loginAddressEvery, loginAddressBurst, now)
	if !ok {
		return false
	}
	if addrLim.TokensAt(now) < 1 {
		return false
	}
	acctLim, ok := l.bucketLocked("u\x00"+addr+"\x00"+account, loginAccountEvery, loginAccountBurst, now)
	if !ok {
		return false
	}
	if acctLim.TokensAt(now) < 1 {
		return false
	}
	addrLim.AllowN(now, 1)
	acctLim.AllowN(now, 1)
	return true
}

// bucketLocked returns key's bucket, creating a full one; ok is false when
// there is no room for a new bucket.
func (l *loginLimiter) bucketLocked(key string, every time.Duration, burst int, now time.Time) (*rate.Limiter, bool) {
	if b := l.buckets[key]; b != nil {
		return b, true
	}
	max := l.maxBuckets
	if max == 0 {
		max = defaultMaxLoginBuckets
	}
	if len(l.buckets) >= max && now.Sub(l.lastSweep) >= time.Second {
		l.lastSweep = now
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(b.Burst()) {
				delete(l.buckets, k)
			}
		}
	}
	if len(l.buckets) >= max {
		return nil, false
	}
	b := rate.NewLimiter(rate.Every(every), burst)
	l.buckets[key] = b
	return b, true
}

// limitAddr is the address a login is limited by: the client's IP, and
// for IPv6 its /64 (one host usually holds a whole /64).
func limitAddr(r *http.Request) string {
	host := clientIP(r)
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
