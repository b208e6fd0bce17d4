package handlers

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestLoginLimiterBounded: a flood of distinct keys never resets a limit
// that is in force, memory stays under maxBuckets, and buckets that have
// refilled are forgotten to make room.
func TestLoginLimiterBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := &loginLimiter{now: func() time.Time { return now }, maxBuckets: 100}
	for i := range loginAccountBurst {
		if !l.allow("192.0.2.1", "id:victim") {
			t.Fatalf("attempt %d refused, want the burst of %d allowed", i, loginAccountBurst)
		}
	}
	if l.allow("192.0.2.1", "id:victim") {
		t.Fatal("attempt past the burst allowed")
	}
	// One address spraying many accounts meets the address's limit.
	for i := range loginAddressBurst - loginAccountBurst {
		if !l.allow("192.0.2.1", fmt.Sprintf("login:spray%d", i)) {
			t.Fatalf("spray attempt %d refused, want %d in all from the address", i, loginAddressBurst)
		}
	}
	if l.allow("192.0.2.1", "login:one-more") {
		t.Fatal("attempt past the address's burst allowed")
	}
	// 100k logins with distinct names from distinct addresses.
	for i := range 100_000 {
		l.allow(fmt.Sprintf("198.51.%d.%d", i/256%256, i%256), fmt.Sprintf("login:u%d", i))
		if len(l.buckets) > 100 {
			t.Fatalf("%d buckets after %d attempts, want at most 100", len(l.buckets), i+1)
		}
	}
	if l.allow("192.0.2.1", "id:victim") {
		t.Fatal("the flood reset the victim's limit")
	}
	// Once every bucket has refilled, they make room for new ones, and
	// the victim's limit has run its course.
	now = now.Add(loginAccountEvery * loginAccountBurst)
	if !l.allow("203.0.113.9", "login:new") {
		t.Fatal("a new key is refused after every bucket refilled")
	}
	if !l.allow("192.0.2.1", "id:victim") {
		t.Fatal("the victim's limit did not refill")
	}
}

func TestLimitAddr(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"127.0.0.2:1234", "127.0.0.2"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
	} {
		r := &http.Request{RemoteAddr: tc.remote}
		if got := limitAddr(r); got != tc.want {
			t.Errorf("limitAddr(%s) = %s, want %s", tc.remote, got, tc.want)
		}
	}
}
