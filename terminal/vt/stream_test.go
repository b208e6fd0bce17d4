package vt

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// recordStreams records the PTY sessions of the exactness tests. The
// sessions run concurrently; each is deterministic input typed after
// polling the output for a marker.
func recordStreams(t *testing.T) map[string]stream {
	needTools(t, "bash", "vim", "htop", "less", "ls")
	home := setupHome(t)
	streams := map[string]stream{}
	var mu sync.Mutex
	put := func(name string, s stream) {
		mu.Lock()
		streams[name] = s
		mu.Unlock()
	}
	var wg sync.WaitGroup
	sessions := []func(t *testing.T){
		func(t *testing.T) {
			r := startRecording(t, home)
			r.waitFor(0, "$ ")
			r.run(`printf '\e[31mred\e[0m \e[1;38;5;208mbold256\e[0m \e[48;2;10;100;200mtruecolor\e[0m \e[4:3;58;5;196mcurly\e[0m \e[21mdouble\e[0m \e[53mover\e[0m \e[3;9mitalic-strike\e[0m\n'`)
			r.run(`for i in $(seq 0 255); do printf "\e[48;5;%dm%4d" $i $i; done; printf '\e[0m\n'`)
			r.run(`ls --color=always -la dir`)
			r.run(`printf '中文字符 テスト 한국어 😀👍🏽 e\xcc\x81 ｶﾀｶﾅ\n'`)
			r.run(`printf '\e]0;my title; with semi\a'`)
			r.resize(60, 20)
			r.run(`seq 1 60; printf '%.0sX' $(seq 1 200); echo; printf '%.0s中' $(seq 1 70); echo`)
			r.resize(100, 30)
			r.run(`ls --color=always dir; printf '\e[7mreverse\e[27m \e[2mdim\e[22m\n'`)
			put("bash", r.snapshot())
		},
		func(t *testing.T) {
			r := startRecording(t, home)
			r.waitFor(0, "$ ")
			r.typeWait("vim -u NONE -i NONE -N -c 'syntax on' -c 'set mouse=a termguicolors number' -c 'vsplit' main.go\r", "Greeting")
			r.typeWait("20Gdd", "Greeting")
			r.typeWait(":echo 'ST' . 'EP1'\r", "STEP1")
			r.resize(100, 30)
			r.typeWait(":echo 'ST' . 'EP2'\r", "STEP2")
			r.typeWait("\x17lG:echo 'ST' . 'EP2b'\r", "STEP2b")
			r.typeWait(":echo 'ST' . 'EP3'\r", "STEP3")
			put("vim running", r.snapshot())
			r.typeWait(":qa!\r", "$ ")
			r.run("echo after vim")
			put("vim exited", r.snapshot())
		},
		func(t *testing.T) {
			r := startRecording(t, home)
			r.waitFor(0, "$ ")
			r.typeWait("htop -d 50\r", "Load average")
			from := r.offset()
			r.resize(90, 28)
			r.waitFor(from, "Load average")
			r.typeWait("t", "\x1b[")
			r.typeWait("t", "\x1b[")
			put("htop running", r.snapshot())
		},
		func(t *testing.T) {
			r := startRecording(t, home)
			r.waitFor(0, "$ ")
			r.typeWait("less -R text.txt\r", "lorem")
			r.typeWait(" ", "line")
			r.resize(70, 22)
			r.typeWait("/ipsum\r", "ipsum")
			r.typeWait("G", "END")
			put("less running", r.snapshot())
		},
	}
	for _, s := range sessions {
		wg.Add(1)
		t.Run("", func(t *testing.T) {
			t.Parallel()
			defer wg.Done()
			s(t)
		})
	}
	return streams
}

func TestRecordedStreams(t *testing.T) {
	var streams map[string]stream
	t.Run("record", func(t *testing.T) { streams = recordStreams(t) })
	if t.Failed() {
		return
	}
	names := []string{"bash", "vim running", "vim exited", "htop running", "less running"}
	type plan struct {
		name              string
		term              *Terminal
		raw, ser          int
		offsets, snapCase []int
	}
	var ref []refCase
	var plans []plan
	rng := rand.New(rand.NewPCG(5, 5))
	for _, name := range names {
		s, ok := streams[name]
		if !ok {
			t.Fatalf("stream %q was not recorded", name)
		}
		p := plan{name: name}
		full := refCase{cols: 80, rows: 24, ops: s.ops(0, len(s.data))}
		p.term = full.run()
		cols, rows := p.term.Size()
		p.raw = len(ref)
		ref = append(ref, full)
		p.ser = len(ref)
		ref = append(ref, refCase{cols: cols, rows: rows, ops: []op{{data: p.term.Serialize()}}})
		for i := 0; i < 60; i++ {
			k := rng.IntN(len(s.data) + 1)
			e := refCase{cols: 80, rows: 24, ops: s.ops(0, k)}.run()
			c, r := s.sizeAt(k)
			ops := append([]op{{data: e.Serialize()}}, s.ops(k, len(s.data))...)
			p.offsets = append(p.offsets, k)
			p.snapCase = append(p.snapCase, len(ref))
			ref = append(ref, refCase{cols: c, rows: r, ops: ops})
		}
		plans = append(plans, p)
	}
	dumps := xtermRef(t, ref)
	var table []string
	for _, p := range plans {
		t.Run(strings.ReplaceAll(p.name, " ", "_"), func(t *testing.T) {
			want := dumps[p.raw]
			n, bad, rep := diff(want, goDump(p.term))
			if bad > 0 {
				t.Errorf("emulator vs xterm.js: %d of %d wrong:\n%s", bad, n, strings.Join(rep, "\n"))
			}
			n2, bad2, rep := diff(want, dumps[p.ser])
			if bad2 > 0 {
				t.Errorf("restored vs xterm.js: %d of %d wrong:\n%s", bad2, n2, strings.Join(rep, "\n"))
			}
			snapBad := 0
			for i, ci := range p.snapCase {
				_, b, rep := diff(want, dumps[ci])
				if b > 0 {
					snapBad++
					t.Errorf("snapshot at byte %d of %d, then the rest: %d wrong:\n%s", p.offsets[i], len(streams[p.name].data), b, strings.Join(rep, "\n"))
				}
			}
			table = append(table, strings.Join([]string{p.name, itoa(n), itoa(bad), itoa(bad2), itoa(snapBad) + "/60"}, " | "))
		})
	}
	t.Logf("scenario | cells compared | emulator wrong | restored wrong | snapshots wrong\n%s", strings.Join(table, "\n"))
}
