package backoff

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestNextDoublesToMaxAndResets(t *testing.T) {
	b := New(500*time.Millisecond, 15*time.Second)
	var got []time.Duration
	for range 8 {
		got = append(got, b.Next())
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != 500*time.Millisecond {
		t.Fatalf("after Reset the delay is %v, want 500ms", d)
	}
}

func TestMaxBelowMin(t *testing.T) {
	b := New(time.Second, time.Millisecond)
	for range 3 {
		if d := b.Next(); d != time.Second {
			t.Fatalf("delay %v, want the minimum 1s", d)
		}
	}
}

func TestNoOverflow(t *testing.T) {
	b := New(time.Duration(1<<62), time.Duration(1<<63-1))
	for range 4 {
		if d := b.Next(); d < time.Duration(1<<62) {
			t.Fatalf("delay %v went below the minimum (overflow)", d)
		}
	}
}

func TestJitterBounds(t *testing.T) {
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{
		{0, 800 * time.Millisecond},     // lowest draw: -20 %
		{0.5, time.Second},              // middle: unchanged
		{0.75, 1100 * time.Millisecond}, // +10 %
	} {
		b := New(time.Second, time.Minute).WithJitter(0.2)
		b.rand = func() float64 { return tc.r }
		if d := b.Next(); d != tc.want {
			t.Errorf("draw %v: delay %v, want %v", tc.r, d, tc.want)
		}
	}
	b := New(time.Second, time.Minute).WithJitter(5)
	if b.jitter != 1 {
		t.Fatalf("jitter %v, want clamped to 1", b.jitter)
	}
}

// TestLoop checks the delays Loop waits and its resets on a fake clock:
// runs that fail at once back off, a run that lasted resetAfter starts
// again from the minimum, and a cancelled context ends the loop.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clock time.Time
	now := func() time.Time { return clock }
	// How long each run lasts on the fake clock; the last run cancels.
	lasts := []time.Duration{0, 0, 0, time.Minute, 0, 0}
	runs := 0
	run := func() error {
		clock = clock.Add(lasts[runs])
		runs++
		if runs == len(lasts) {
			cancel()
		}
		return errors.New("down")
	}
	var retried, slept []time.Duration
	retry := func(err error, in time.Duration) {
		if err == nil || err.Error() != "down" {
			t.Errorf("retry got %v, want the run's error", err)
		}
		retried = append(retried, in)
	}
	sleep := func(_ context.Context, d time.Duration) bool {
		slept = append(slept, d)
		clock = clock.Add(d)
		return true
	}
	New(time.Second, 30*time.Second).loop(ctx, 30*time.Second, func(func()) error { return run() }, retry, now, sleep)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, time.Second, 2 * time.Second}
	if !slices.Equal(retried, want) || !slices.Equal(slept, want) {
		t.Fatalf("retried %v, slept %v; want %v", retried, slept, want)
	}
	if runs != len(lasts) {
		t.Fatalf("%d runs, want %d", runs, len(lasts))
	}
}

func TestLoopStopsWhenSleepIsCut(t *testing.T) {
	runs := 0
	New(time.Second, time.Second).loop(context.Background(), 0, func(func()) error { runs++; return nil }, nil,
		time.Now, func(context.Context, time.Duration) bool { return false })
	if runs != 1 {
		t.Fatalf("%d runs, want 1", runs)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep waited out an hour on a cancelled context")
	}
	if !Sleep(context.Background(), 0) {
		t.Fatal("Sleep(0) did not report the wait done")
	}
}

func TestFactorGrowsGently(t *testing.T) {
	b := New(250*time.Millisecond, 2*time.Second).WithFactor(1.5)
	var got []time.Duration
	for range 8 {
		got = append(got, b.Next())
	}
	want := []time.Duration{250 * time.Millisecond, 375 * time.Millisecond, 562500 * time.Microsecond, 843750 * time.Microsecond,
		1265625 * time.Microsecond, 1898437500, 2 * time.Second, 2 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	if New(time.Second, time.Minute).WithFactor(0.5).factor != 1 {
		t.Fatal("a factor below 1 was not raised to 1")
	}
	big := New(time.Duration(1<<62), time.Duration(1<<63-1)).WithFactor(1.5)
	for range 4 {
		if d := big.Next(); d < time.Duration(1<<62) {
			t.Fatalf("delay %v went below the minimum (overflow)", d)
		}
	}
}

// TestLoopResetOnSuccess: with LoopReset, a run that called succeeded
// starts the delay again from the minimum even though it lasted no time
// on the clock (Loop would have kept growing it); runs that did not call
// it back off.
func TestLoopResetOnSuccess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Which runs succeed; the last cancels.
	succeeds := []bool{false, false, false, true, false, false}
	runs := 0
	run := func(succeeded func()) error {
		if succeeds[runs] {
			succeeded()
		}
		runs++
		if runs == len(succeeds) {
			cancel()
		}
		return errors.New("down")
	}
	var slept []time.Duration
	sleep := func(_ context.Context, d time.Duration) bool {
		slept = append(slept, d)
		return true
	}
	var clock time.Time // never moves: only succeeded resets
	New(time.Second, 30*time.Second).loop(ctx, 0, run, nil, func() time.Time { return clock }, sleep)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, time.Second, 2 * time.Second}
	if !slices.Equal(slept, want) {
		t.Fatalf("slept %v, want %v", slept, want)
	}
}
