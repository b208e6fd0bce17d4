package vt

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchDir, when set, receives the benchmark streams (seq.bin, vim.bin,
// htop.bin) so that bench/vt/run.sh can time @xterm/headless on the same bytes.
var benchDir = flag.String("vt.benchdir", "", "write the benchmark streams to this directory")

var benchStreams = struct {
	once sync.Once
	m    map[string][]byte
}{}

// seqOutput is what a tty shows for `seq 1 n`: each line ends in \r\n.
func seqOutput(n int) []byte {
	b := make([]byte, 0, n*9)
	for i := 1; i <= n; i++ {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\r', '\n')
	}
	return b
}

// recordBenchStreams records a scripted vim session and an htop session.
func recordBenchStreams(b *testing.B) map[string][]byte {
	benchStreams.once.Do(func() {
		m := map[string][]byte{"seq": seqOutput(3000000)}
		needTools(b, "vim", "htop")
		home := setupHome(b)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := startRecording(b, home)
			r.waitFor(0, "$ ")
			r.typeWait("vim -u NONE -i NONE -N -c 'syntax on' -c 'set mouse=a termguicolors number cursorline' -c 'vsplit' main.go\r", "Greeting")
			for i := 0; i < 120; i++ {
				// Page down and up both windows, and scroll line by line.
				r.typeWait("\x06\x06\x02:echo 'A' . '"+strconv.Itoa(i)+"Z'\r", "A"+strconv.Itoa(i)+"Z")
				r.typeWait("\x17w10jzz:echo 'B' . '"+strconv.Itoa(i)+"Z'\r", "B"+strconv.Itoa(i)+"Z")
			}
			s := r.snapshot()
			mu.Lock()
			m["vim"] = s.data
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			r := startRecording(b, home)
			r.waitFor(0, "$ ")
			r.typeWait("htop -d 1\r", "Load average")
			for i := 0; i < 60; i++ {
				// Toggle the tree view and sort orders to force redraws.
				r.typeWait("tP", "\x1b[")
				r.typeWait("tM", "\x1b[")
			}
			s := r.snapshot()
			mu.Lock()
			m["htop"] = s.data
			mu.Unlock()
		}()
		wg.Wait()
		if *benchDir != "" {
			for name, data := range m {
				if err := os.WriteFile(filepath.Join(*benchDir, name+".bin"), data, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
		benchStreams.m = m
	})
	return benchStreams.m
}

func benchParse(b *testing.B, name string) {
	data := recordBenchStreams(b)[name]
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		term := New(80, 24, Options{})
		for off := 0; off < len(data); off += 64 << 10 {
			term.Write(data[off:min(off+64<<10, len(data))])
		}
	}
}

// BenchmarkParseSeq parses the output of `seq 1 3000000` (22.9 MB).
func BenchmarkParseSeq(b *testing.B) { benchParse(b, "seq") }

// BenchmarkParseVim parses a recorded vim session (syntax, vsplit, paging).
func BenchmarkParseVim(b *testing.B) { benchParse(b, "vim") }

// BenchmarkParseHtop parses a recorded htop session.
func BenchmarkParseHtop(b *testing.B) { benchParse(b, "htop") }

// colouredLines returns n lines of 80 columns with a few colour changes each.
func colouredLines(n int) []byte {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "\x1b[38;5;%dm%06d \x1b[1;32m%-30s\x1b[0;48;2;%d;40;60m%-20s\x1b[0m \x1b[33m%-21s\x1b[0m\r\n",
			i%256, i, strings.Repeat("ab", 15), i%256, "coloured background", strings.Repeat("x", i%21))
	}
	return []byte(sb.String())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory reports the memory of an empty session and of one with
// 10,000 lines of 80-column coloured output, and the time to serialise it.
func BenchmarkMemory(b *testing.B) {
	data := colouredLines(10000)
	for b.Loop() {
		before := heapInUse()
		empty := New(80, 24, Options{})
		emptyBytes := heapInUse() - before
		runtime.KeepAlive(empty)

		before = heapInUse()
		full := New(80, 24, Options{})
		full.Write(data)
		fullBytes := heapInUse() - before
		start := time.Now()
		snap := full.Serialize()
		ser := time.Since(start)
		b.ReportMetric(float64(emptyBytes)/1e6, "empty-MB")
		b.ReportMetric(float64(fullBytes)/1e6, "10k-lines-MB")
		b.ReportMetric(float64(full.BytesPerScrollbackLine()), "B/line")
		b.ReportMetric(float64(ser.Microseconds())/1000, "serialize-ms")
		b.ReportMetric(float64(len(snap))/1e6, "snapshot-MB")
		runtime.KeepAlive(full)
	}
}
