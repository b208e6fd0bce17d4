package tailnet

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// TrimOptions configure a [Trimmer].
type TrimOptions struct {
	// Interval is how often the heap is looked at. Default 10 s.
	Interval time.Duration
	// QuietRate is the allocation rate, in bytes per second over one
	// interval, below which the process counts as quiet. Default 2 MiB/s.
	QuietRate float64
	// MinGrowth is how far the heap the process holds (live objects,
	// pooled buffers and free pages not yet given back) must have grown
	// since the last trim before a quiet process is trimmed. Default
	// 16 MiB.
	MinGrowth uint64
	// Logger, if set, gets one Info line per trim.
	Logger *slog.Logger
	// OnTrim, if set, is called after each trim with the bytes the process
	// held before and after it.
	OnTrim func(before, after uint64)
}

// A Trimmer gives the memory that a burst of tailnet traffic left behind
// back to the operating system once the process has gone quiet. Make one
// per process, from main, and call Run.
//
// Why it is needed: wireguard-go moves every packet in a 64 KiB buffer
// from a sync.Pool with no upper bound (PreallocatedBuffersPerPool is 0 on
// Linux), so a few fast streams fill the pools with hundreds of such
// buffers; gVisor's netstack pools its chunks the same way. When the
// streams end, the process stops allocating, so no GC runs to empty the
// pools (a sync.Pool needs two), and the Go runtime keeps freed pages up
// to the next GC goal (twice the heap) instead of returning them. The
// server's RSS stayed at its flood peak for minutes.
//
// The rule: every Interval, if the process allocated less than QuietRate
// and holds MinGrowth more heap than after the last trim, run two GCs
// (the first moves pooled buffers to the pools' victim caches, the second
// frees them) and return all free pages to the OS. A busy process is
// left to the Go runtime; a quiet one that did not grow is not touched.
type Trimmer struct {
	o    TrimOptions
	base heapSample
}

// NewTrimmer takes the process's current heap as the baseline.
func NewTrimmer(o TrimOptions) *Trimmer {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.QuietRate <= 0 {
		o.QuietRate = 2 << 20
	}
	if o.MinGrowth == 0 {
		o.MinGrowth = 16 << 20
	}
	return &Trimmer{o: o, base: readHeap()}
}

// Run trims until ctx is done.
func (tr *Trimmer) Run(ctx context.Context) {
	o := tr.o
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	base, last, lastAt := tr.base.held(), tr.base.allocs, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m := readHeap()
			rate := float64(m.allocs-last) / now.Sub(lastAt).Seconds()
			last, lastAt = m.allocs, now
			held := m.held()
			if rate >= o.QuietRate || held < base+o.MinGrowth {
				base = min(base, held)
				continue
			}
			start := time.Now()
			runtime.GC()
			debug.FreeOSMemory()
			after := readHeap()
			base, last = after.held(), after.allocs
			if o.Logger != nil {
				o.Logger.Info("returned memory to the OS after a quiet interval",
					"held_mib_before", held>>20, "held_mib_after", base>>20, "took", time.Since(start).Round(time.Millisecond))
			}
			if o.OnTrim != nil {
				o.OnTrim(held, base)
			}
		}
	}
}

// heapSample is what a Trimmer reads from runtime/metrics.
type heapSample struct {
	allocs  uint64 // bytes allocated since the process started
	objects uint64 // bytes in heap objects: live, pooled, not yet swept
	free    uint64 // free heap pages not yet returned to the OS
}

// held is the heap memory the process keeps from the OS.
func (h heapSample) held() uint64 { return h.objects + h.free }

var heapMetrics = []string{"/gc/heap/allocs:bytes", "/memory/classes/heap/objects:bytes", "/memory/classes/heap/free:bytes"}

func readHeap() heapSample {
	s := make([]rtmetrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	rtmetrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return heapSample{allocs: v(0), objects: v(1), free: v(2)}
}
