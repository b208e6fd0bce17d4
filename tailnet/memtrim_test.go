package tailnet

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestTrimMemory fills a sync.Pool with 64 KiB buffers the way
// wireguard-go does under a fast stream, then goes quiet: the trimmer must
// notice, empty the pool and give the pages back to the OS.
func TestTrimMemory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type trim struct{ before, after uint64 }
	trims := make(chan trim, 8)
	tr := NewTrimmer(TrimOptions{Interval: 100 * time.Millisecond, MinGrowth: 32 << 20,
		OnTrim: func(before, after uint64) { trims <- trim{before, after} }})
	go tr.Run(ctx)

	const n = 2048 // 128 MiB
	pool := sync.Pool{New: func() any { return new([64 << 10]byte) }}
	bufs := make([]*[64 << 10]byte, n)
	for i := range bufs {
		bufs[i] = pool.Get().(*[64 << 10]byte)
		bufs[i][0] = byte(i)
	}
	for _, b := range bufs {
		pool.Put(b)
	}
	bufs = nil
	held := readHeap().held()
	if held < 128<<20 {
		t.Fatalf("the burst should hold at least 128 MiB, holds %d MiB", held>>20)
	}

	select {
	case tr := <-trims:
		t.Logf("trimmed: held %d MiB before, %d MiB after", tr.before>>20, tr.after>>20)
		if tr.before-tr.after < 100<<20 {
			t.Fatalf("the trim gave back only %d MiB of a 128 MiB pool", (tr.before-tr.after)>>20)
		}
		if now := readHeap().held(); now > held-100<<20 {
			t.Fatalf("the process still holds %d MiB after the trim (%d MiB after the burst)", now>>20, held>>20)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no trim within 20 s of a quiet process holding %d MiB more than before", held>>20)
	}
}
