// Package backoff is the one retry delay of this module: a delay that
// starts at a minimum, grows by a factor (2 unless [Backoff.WithFactor]
// says otherwise) after each failure up to a maximum, and optionally varies
// by a random fraction (jitter). The agent's reconnect loops use it
// through [Backoff.LoopReset], the provisioner's restart loop through
// [Backoff.Loop].
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a growing delay between Min and Max. Create it with [New].
// It is not safe for concurrent use: each loop owns one.
type Backoff struct {
	min, max time.Duration
	factor   float64
	jitter   float64
	next     time.Duration
	// rand returns a number in [0, 1); tests replace it.
	rand func() float64
}

// New returns a backoff whose first delay is min and which doubles up to
// max, without jitter. A max below min is raised to min.
func New(min, max time.Duration) *Backoff {
	max = maxDuration(min, max)
	return &Backoff{min: min, max: max, factor: 2, next: min, rand: rand.Float64}
}

// WithFactor makes each delay f times the one before (up to the maximum)
// instead of twice it: 1.5 grows gently, so that a retry after a long
// outage still comes soon after the other side is back. f is raised to 1
// at least. It returns b.
func (b *Backoff) WithFactor(f float64) *Backoff {
	b.factor = max(f, 1)
	return b
}

// WithJitter makes each delay vary at random by up to frac of itself
// either way (0.2 gives 80 % to 120 %), so that many clients that failed
// together do not retry together. frac is clamped to [0, 1]. It returns b.
func (b *Backoff) WithJitter(frac float64) *Backoff {
	b.jitter = min(max(frac, 0), 1)
	return b
}

// Next returns the delay to wait now and grows the following one by the
// factor, up to the maximum.
func (b *Backoff) Next() time.Duration {
	d := b.next
	if f := float64(b.next) * b.factor; f >= float64(b.max) {
		b.next = b.max // also where the product overflows
	} else {
		b.next = maxDuration(time.Duration(f), b.next)
	}
	if b.jitter > 0 {
		d = time.Duration(float64(d) * (1 + b.jitter*(2*b.rand()-1)))
	}
	return d
}

// Reset makes the next delay the minimum again.
func (b *Backoff) Reset() { b.next = b.min }

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// Loop runs run until ctx ends. After each run that returns while ctx is
// live it calls retry with run's error and the delay it will wait, then
// waits that delay (returning early when ctx ends). A run that lasted at
// least resetAfter resets the delay to its minimum first; zero never
// resets.
func (b *Backoff) Loop(ctx context.Context, resetAfter time.Duration, run func() error, retry func(err error, in time.Duration)) {
	b.loop(ctx, resetAfter, func(func()) error { return run() }, retry, time.Now, Sleep)
}

// LoopReset is [Backoff.Loop] for runs that know when they succeeded (a
// connection that was established, say): run calls succeeded, and the
// delay after that run starts again from the minimum however short the
// run was. A run that never calls it backs off as in Loop.
func (b *Backoff) LoopReset(ctx context.Context, run func(succeeded func()) error, retry func(err error, in time.Duration)) {
	b.loop(ctx, 0, run, retry, time.Now, Sleep)
}

func (b *Backoff) loop(ctx context.Context, resetAfter time.Duration, run func(succeeded func()) error, retry func(error, time.Duration),
	now func() time.Time, sleep func(context.Context, time.Duration) bool) {
	for {
		start := now()
		ok := false
		err := run(func() { ok = true })
		if ctx.Err() != nil {
			return
		}
		if ok || resetAfter > 0 && now().Sub(start) >= resetAfter {
			b.Reset()
		}
		d := b.Next()
		if retry != nil {
			retry(err, d)
		}
		if !sleep(ctx, d) {
			return
		}
	}
}

// Sleep waits d or until ctx ends, and reports whether it waited d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
