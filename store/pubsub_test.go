package store_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatewaydev/coder/store"
	"github.com/gatewaydev/coder/store/storetest"
)

const waitLong = 15 * time.Second

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newPubsub(t *testing.T, db *store.DB) *store.Pubsub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ps, err := store.NewPubsub(ctx, db.Pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ps.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return ps
}

// recorder returns a callback that forwards payloads to a channel.
func recorder() (func([]byte), chan []byte) {
	ch := make(chan []byte, 100)
	return func(p []byte) { ch <- p }, ch
}

func receive(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	timer := time.NewTimer(waitLong)
	defer timer.Stop()
	select {
	case p := <-ch:
		return p
	case <-timer.C:
		t.Fatal("timed out waiting for an event")
		return nil
	}
}

func publish(t *testing.T, ps *store.Pubsub, channel, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := ps.Publish(ctx, channel, []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

// TestPubsubAcrossInstances: an event published by one Pubsub reaches the
// subscribers of its channel in another (and in itself), not those of other
// channels; an empty payload arrives as empty, not nil.
func TestPubsubAcrossInstances(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	a, b := newPubsub(t, db), newPubsub(t, db)
	const channel = "agent_status:6f1c2a0e-1b7c-4b43-9d0a-2f3c4d5e6f70"

	fnB, gotB := recorder()
	defer b.Subscribe(channel, fnB)()
	fnA, gotA := recorder()
	defer a.Subscribe(channel, fnA)()
	fnOther, gotOther := recorder()
	defer b.Subscribe("tailnet.updates", fnOther)()

	publish(t, a, channel, `{"status":"connected"}`)
	for name, ch := range map[string]chan []byte{"other instance": gotB, "same instance": gotA} {
		if p := receive(t, ch); string(p) != `{"status":"connected"}` {
			t.Errorf("%s got %q", name, p)
		}
	}
	publish(t, a, channel, "")
	if p := receive(t, gotB); p == nil || len(p) != 0 {
		t.Errorf("empty payload arrived as %#v, want empty and non-nil", p)
	}
	// Events are delivered in order: the first event the other channel's
	// subscriber sees is its own.
	publish(t, b, "tailnet.updates", "marker")
	if p := receive(t, gotOther); string(p) != "marker" {
		t.Errorf("subscriber of another channel got %q first, want marker", p)
	}
}

// TestPubsubCancel: after cancel no callback starts; the other subscribers
// of the channel keep theirs; cancel is idempotent and may be called from
// inside the callback.
func TestPubsubCancel(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	ps := newPubsub(t, db)
	const channel = "workspace_events"

	fnCancelled, gotCancelled := recorder()
	cancel := ps.Subscribe(channel, fnCancelled)
	fnKept, gotKept := recorder()
	defer ps.Subscribe(channel, fnKept)()

	publish(t, ps, channel, "1")
	if p := receive(t, gotCancelled); string(p) != "1" {
		t.Fatalf("before cancel: got %q", p)
	}
	receive(t, gotKept)
	cancel()
	cancel()
	publish(t, ps, channel, "2")
	publish(t, ps, channel, "3")
	for _, want := range []string{"2", "3"} {
		if p := receive(t, gotKept); string(p) != want {
			t.Errorf("kept subscriber got %q, want %q", p, want)
		}
	}
	select {
	case p := <-gotCancelled:
		t.Errorf("cancelled subscriber got %q", p)
	default:
	}

	// Cancel from inside the callback: the first event is the last.
	got := make(chan []byte, 10)
	var selfCancel func()
	ready := make(chan struct{})
	selfCancel = ps.Subscribe(channel, func(p []byte) {
		<-ready
		got <- p
		selfCancel()
	})
	close(ready)
	publish(t, ps, channel, "4")
	publish(t, ps, channel, "5")
	if p := receive(t, got); string(p) != "4" {
		t.Errorf("self-cancelling subscriber got %q, want 4", p)
	}
	for _, want := range []string{"4", "5"} {
		if p := receive(t, gotKept); string(p) != want {
			t.Errorf("kept subscriber got %q, want %q", p, want)
		}
	}
	select {
	case p := <-got:
		t.Errorf("self-cancelled subscriber got %q after cancelling", p)
	default:
	}
}

// TestPubsubReconnect: when the listening connection is terminated,
// subscribers get a nil payload (resync) once it is back, and then events
// again; twice in a row.
func TestPubsubReconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storetest.New(t)
	listener, publisher := newPubsub(t, db), newPubsub(t, db)
	const channel = "agent_status"
	fn, got := recorder()
	defer listener.Subscribe(channel, fn)()
	// The publisher's listening connection is terminated too: a subscriber
	// tells when it is back.
	fnP, gotP := recorder()
	defer publisher.Subscribe("unused", fnP)()

	for round := range 2 {
		var terminated int
		err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'coder_pubsub' AND datname = current_database()`).Scan(&terminated)
		if err != nil {
			t.Fatal(err)
		}
		if terminated != 2 {
			t.Fatalf("round %d: terminated %d listening connections, want 2", round, terminated)
		}
		for _, ch := range []chan []byte{got, gotP} {
			if p := receive(t, ch); p != nil {
				t.Fatalf("round %d: first event after the termination = %q, want nil (resync)", round, p)
			}
		}
		publish(t, publisher, channel, "after")
		if p := receive(t, got); string(p) != "after" {
			t.Fatalf("round %d: got %q after reconnecting, want after", round, p)
		}
	}

	// A channel subscribed after the reconnections works too.
	fn2, got2 := recorder()
	defer listener.Subscribe("late", fn2)()
	publish(t, publisher, "late", "x")
	if p := receive(t, got2); string(p) != "x" {
		t.Errorf("late subscriber got %q", p)
	}
}

// TestPubsubValidation: channel names and payloads PostgreSQL would reject
// or that need quoting thought are refused.
func TestPubsubValidation(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	ps := newPubsub(t, db)
	ctx := context.Background()
	for _, tc := range []struct {
		name, channel string
		payload       []byte
	}{
		{"empty channel", "", nil},
		{"space", "agent status", nil},
		{"quote", `x"; DROP TABLE users; --`, nil},
		{"too long", strings.Repeat("a", 64), nil},
		{"non-ascii", "añb", nil},
		{"payload too long", "ok", bytes.Repeat([]byte("a"), 8000)},
		{"payload not utf-8", "ok", []byte{0xff, 0xfe}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ps.Publish(ctx, tc.channel, tc.payload); err == nil {
				t.Errorf("Publish(%q, %d bytes) succeeded", tc.channel, len(tc.payload))
			}
			if tc.payload != nil {
				return
			}
			defer func() {
				if recover() == nil {
					t.Errorf("Subscribe(%q) did not panic", tc.channel)
				}
			}()
			ps.Subscribe(tc.channel, func([]byte) {})
		})
	}
	if err := ps.Publish(ctx, strings.Repeat("a", 63), bytes.Repeat([]byte("a"), 7999)); err != nil {
		t.Errorf("longest channel and payload: %v", err)
	}
}

// TestPubsubClose: Close is idempotent, stops callbacks, and Subscribe
// afterwards is a no-op.
func TestPubsubClose(t *testing.T) {
	t.Parallel()
	db := storetest.New(t)
	ps := newPubsub(t, db)
	fn, got := recorder()
	cancel := ps.Subscribe("c", fn)
	if err := ps.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ps.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	cancel()
	ps.Subscribe("c", fn)()
	other := newPubsub(t, db)
	publish(t, other, "c", "after close")
	fn2, got2 := recorder()
	defer other.Subscribe("c", fn2)()
	publish(t, other, "c", "sync")
	receive(t, got2)
	select {
	case p := <-got:
		t.Errorf("closed Pubsub delivered %q", p)
	default:
	}
}
